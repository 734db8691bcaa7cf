package verifier

// What the external tests (package verifier_test) use of this package's
// test fixtures: the attack suite runs against a sidecar's /v1/verify in
// attack_sidecar_test.go, from the one list Verify is tested with.
type Attack = attack

// The attack suite and its runner.
var (
	Attacks    = attacks
	RunAttacks = runAttacks
)

// Token is the attack's token.
func (a attack) Token() string { return a.token }

// NoHTTP reports whether no HTTP request can carry the attack's token.
func (a attack) NoHTTP() bool { return a.noHTTP }
