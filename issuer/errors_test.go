package issuer

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestAPIError_RecordedIsNeverNothingDone: a change that was recorded and
// will be published is answered "recorded", even when what failed after
// the commit (sharing a revocation's cut-off with the other replicas, say)
// wraps an error that alone means nothing was done. Answering "nothing was
// done, retry" for a revocation that is in force would be false.
func TestAPIError_RecordedIsNeverNothingDone(t *testing.T) {
	for name, err := range map[string]error{
		"unavailable inside":   fmt.Errorf("%w: %w", errNotPublished, fmt.Errorf("record cut-off: %w", errUnavailable)),
		"deadline inside":      fmt.Errorf("%w: %w", errNotPublished, context.DeadlineExceeded),
		"publish failed alone": fmt.Errorf("%w: %w", errNotPublished, fmt.Errorf("nats: timeout")),
	} {
		e := apiError(err)
		if e.Status != http.StatusServiceUnavailable || !strings.HasPrefix(e.Description, "recorded") {
			t.Errorf("%s: %d %q, want 503 recorded", name, e.Status, e.Description)
		}
	}
	if e := apiError(fmt.Errorf("read session: %w", errUnavailable)); e != errUnavailable {
		t.Errorf("nothing recorded: %q, want %q", e.Description, errUnavailable.Description)
	}
}
