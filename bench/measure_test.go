package bench

import (
	"context"
	"testing"
	"time"
)

// TestRunRate_OverrunWindow: on a machine so loaded that no call finishes
// inside the window, runRate still measures one call and reports the
// window it really took, instead of a rate of nothing. The call's work
// (a sleep longer than the window) stands for that load.
func TestRunRate_OverrunWindow(t *testing.T) {
	const window, call = 5 * time.Millisecond, 30 * time.Millisecond
	samples, seconds, err := runRate(t.Context(), 2, 0, window, func(ctx context.Context, _, _ int) error {
		time.Sleep(call)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 1 {
		t.Fatalf("%d samples, want the one call that finished first", len(samples))
	}
	if samples[0] < call || seconds < call.Seconds() {
		t.Errorf("sample %s over %.3fs: want at least the call's %s", samples[0], seconds, call)
	}
}

// TestRunRate_Window: calls that finish inside the window are measured,
// over the window's length.
func TestRunRate_Window(t *testing.T) {
	const window = 20 * time.Millisecond
	samples, seconds, err := runRate(t.Context(), 2, 0, window, func(ctx context.Context, _, _ int) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) == 0 || seconds != window.Seconds() {
		t.Errorf("%d samples over %.3fs, want some over %.3fs", len(samples), seconds, window.Seconds())
	}
}
