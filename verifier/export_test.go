package verifier

import (
	"testing"

	"github.com/heraldsec/herald/bus"
)

// What the external tests (package verifier_test) use of this package's
// test fixtures: the attack suite runs against a sidecar's /v1/verify in
// attack_sidecar_test.go, from the one list Verify is tested with.
type (
	TestKeys = testKeys
	Attack   = attack
)

// Fixtures of the attack suite.
var (
	NewTestKeys = newTestKeys
	Attacks     = attacks
	RunAttacks  = runAttacks
	BaseClaims  = baseClaims
)

// The issuer and audience the test tokens are for.
const (
	TestIssuer   = testIssuer
	TestAudience = testAudience
)

// PublishTestKeys publishes both of k's token keys in HERALD_KEYS.
func PublishTestKeys(t testing.TB, conn *bus.Conn, k *TestKeys) {
	t.Helper()
	publishKey(t, conn, k.edKid, k.edJWK)
	publishKey(t, conn, k.esKid, k.esJWK)
}

// EdToken signs claims with k's Ed25519 key.
func (k *testKeys) EdToken(tb testing.TB, claims map[string]any) string { return k.edToken(tb, claims) }

// Token is the attack's token.
func (a attack) Token() string { return a.token }

// NoHTTP reports whether no HTTP request can carry the attack's token.
func (a attack) NoHTTP() bool { return a.noHTTP }
