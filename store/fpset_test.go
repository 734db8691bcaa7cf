package store

import (
	"math/rand/v2"
	"testing"
)

// TestFPSet inserts and deletes fingerprints drawn from a small range, so
// that probe runs are long, cross each other and wrap around the end of
// the slots, against a map: every fingerprint is found exactly while it is
// in the map.
func TestFPSet(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 20 {
		var s fpSet
		want := map[uint64]bool{}
		span := uint64(8 + rng.IntN(300))
		for op := range 5000 {
			// Values near multiples of 16 and their wrap: many share a
			// home slot whatever the size.
			fp := 1 + rng.Uint64N(span)*uint64(1+rng.IntN(3))<<4 + uint64(rng.IntN(3))
			if rng.IntN(3) == 0 {
				s.delete(fp)
				delete(want, fp)
			} else {
				if got := s.insert(fp); got == want[fp] {
					t.Fatalf("round %d op %d: insert(%d) = %v with it held %v", round, op, fp, got, want[fp])
				}
				want[fp] = true
			}
			if s.n != len(want) {
				t.Fatalf("round %d op %d: %d held, want %d", round, op, s.n, len(want))
			}
			if op%97 == 0 || op == 4999 {
				for v := uint64(0); v <= 4*(span+1)<<4; v++ {
					if got := s.has(v); got != want[v] {
						t.Fatalf("round %d op %d: has(%d) = %v, want %v", round, op, v, got, want[v])
					}
				}
			}
		}
	}
}
