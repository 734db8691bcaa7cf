package bus

// Test hooks of the group committer, for the external tests.

// AtomicMin is the fewest messages written as one atomic batch.
const AtomicMin = atomicMin

// CommitStats returns how many atomic batches and plain publishes the
// committer of stream has written.
func CommitStats(c *Conn, stream string) (batches, singles uint64) {
	cm := c.committer(stream)
	return cm.batches.Load(), cm.singles.Load()
}

// SetBeforeWrite makes the committer of stream call fn before it writes
// each group, with its number of messages. Set it before publishing.
func SetBeforeWrite(c *Conn, stream string, fn func(msgs int)) {
	c.committer(stream).beforeWrite = fn
}

// Queued returns how many requests wait in the committer of stream.
func Queued(c *Conn, stream string) int {
	cm := c.committer(stream)
	cm.mu.Lock()
	defer cm.mu.Unlock()
	return len(cm.queue)
}
