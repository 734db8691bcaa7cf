package bus

import (
	"strings"
	"testing"
	"time"
)

// TestSnapshotChunks_Bounded splits entries whose values and issuers
// encode to six bytes a byte into chunks that all encode under MaxEventSize, decode
// back to the same entries in order, and agree on id, sequence and count.
func TestSnapshotChunks_Bounded(t *testing.T) {
	at := time.Date(2026, 11, 23, 14, 0, 0, 123456789, time.FixedZone("x", 3600))
	worst := strings.Repeat("\x01", MaxValueLen) // \u0001 each
	var entries []SnapshotEntry
	for i := range 1500 {
		v := worst
		if i%3 == 0 {
			v = "jti-" + strings.Repeat("x", i%50)
		}
		e := SnapshotEntry{Kind: KindToken, Value: v, At: at, Until: at.Add(time.Hour)}
		if i%5 == 0 {
			e.Issuer = strings.Repeat("<", MaxValueLen) // \u003c each
		}
		entries = append(entries, e)
	}
	entries = append(entries, SnapshotEntry{Kind: KindAll, At: at, Until: at.Add(time.Hour)})
	chunks := SnapshotChunks(NewID(), 42, time.Time{}, entries, "test", time.Now())
	if len(chunks) < 2 {
		t.Fatalf("%d chunks, want several", len(chunks))
	}
	var got []SnapshotEntry
	for i, c := range chunks {
		b, err := Encode(c)
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		e, err := Decode(b)
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		s := e.Snapshot
		if s.Index != i || s.Count != len(chunks) || s.Seq != 42 || s.ID != chunks[0].Snapshot.ID {
			t.Fatalf("chunk %d: %+v", i, s)
		}
		if e.Stream() != StreamSnapshots || e.Subject() != SnapshotSubject(i) {
			t.Fatalf("chunk %d on %s %s", i, e.Stream(), e.Subject())
		}
		got = append(got, s.Entries...)
	}
	if len(got) != len(entries) {
		t.Fatalf("%d entries decoded, want %d", len(got), len(entries))
	}
	for i := range got {
		if got[i].Kind != entries[i].Kind || got[i].Value != entries[i].Value || got[i].Issuer != entries[i].Issuer ||
			!got[i].At.Equal(entries[i].At) || !got[i].Until.Equal(entries[i].Until) {
			t.Fatalf("entry %d = %+v, want %+v", i, got[i], entries[i])
		}
	}
	if empty := SnapshotChunks(NewID(), 1, time.Time{}, nil, "test", time.Now()); len(empty) != 1 || empty[0].Snapshot.Count != 1 {
		t.Fatalf("empty snapshot: %d chunks", len(empty))
	}
}

// TestSnapshot_Validate refuses chunks that cannot be part of a snapshot.
func TestSnapshot_Validate(t *testing.T) {
	at := time.Now()
	ok := func() *Snapshot {
		return &Snapshot{ID: "s", Seq: 3, Index: 0, Count: 1,
			Entries: []SnapshotEntry{{Kind: KindToken, Value: "jti", At: at, Until: at.Add(time.Minute)}}}
	}
	if err := ok().Validate(); err != nil {
		t.Fatalf("valid chunk: %v", err)
	}
	for name, edit := range map[string]func(s *Snapshot){
		"no id":             func(s *Snapshot) { s.ID = "" },
		"no seq":            func(s *Snapshot) { s.Seq = 0 },
		"index past count":  func(s *Snapshot) { s.Index = 1 },
		"negative index":    func(s *Snapshot) { s.Index = -1 },
		"no count":          func(s *Snapshot) { s.Count = 0 },
		"too many chunks":   func(s *Snapshot) { s.Count = MaxSnapshotChunks + 1 },
		"bad kind":          func(s *Snapshot) { s.Entries[0].Kind = 0 },
		"no value":          func(s *Snapshot) { s.Entries[0].Value = "" },
		"value for all":     func(s *Snapshot) { s.Entries[0].Kind = KindAll },
		"until before at":   func(s *Snapshot) { s.Entries[0].Until = at.Add(-time.Second) },
		"long value":        func(s *Snapshot) { s.Entries[0].Value = strings.Repeat("v", MaxValueLen+1) },
		"issuer with a NUL": func(s *Snapshot) { s.Entries[0].Issuer = "https://idp.test\x00x" },
	} {
		s := ok()
		edit(s)
		e := &Event{ID: "e", Type: TypeSnapshotChunk, Time: at, Snapshot: s}
		if _, err := Encode(e); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
}
