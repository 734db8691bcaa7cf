package issuer

import "time"

// HoldFollower keeps s's revocation follower from starting when Run
// starts, until the returned release is called: a replica that has not
// caught up with the stream, for as long as a test needs. Call it after
// Open and before Run.
// Requests that would mint wait briefly for it, as they do at start.
func HoldFollower(s *Service) (release func()) {
	ch := make(chan struct{})
	s.catchUpWait = 100 * time.Millisecond
	s.followHold = ch
	return func() { close(ch) }
}
