// Package helm holds the tests of Herald's Helm chart (the herald
// directory beside this file). It is a module of its own, so that Helm and
// the Kubernetes client libraries the tests use never enter the module an
// application imports Herald from: `go test ./...` at the repository root
// does not run it; `.ci/run` does, with
//
//	(cd deploy/helm && go vet ./... && go test ./...)
//
// The tests load the chart with Helm's own library, render it for each
// verifier mode and for Secrets created by the chart or named by the
// operator, and decode every object strictly into the Kubernetes API types;
// the flags the chart gives the issuer and the verifier are handed to the
// real herald binary (built from the repository), which must parse them;
// and the rendered issuer and verifier containers are run as processes, as
// the kubelet would start them, against a NATS server with the chart's
// NATS settings, to verify a token and refuse it once revoked.
// The NATS chart the herald chart depends on is not vendored: the tests
// render the herald chart's own templates and check the values it passes
// to the NATS chart from values.yaml.
package helm
