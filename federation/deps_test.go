package federation

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies guards the package's place: the issuer imports it, so
// it imports neither the issuer nor the verifier, nor any package that
// runs a NATS server.
func TestDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/heraldsec/herald/federation").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	const mod = "github.com/heraldsec/herald/"
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{mod + "issuer", mod + "verifier", mod + "cmd", mod + "bench", mod + "bus/natsserver", "github.com/nats-io/nats-server/"} {
			if dep == bad || strings.HasPrefix(dep, strings.TrimSuffix(bad, "/")+"/") {
				t.Errorf("federation imports %s", dep)
			}
		}
	}
}
