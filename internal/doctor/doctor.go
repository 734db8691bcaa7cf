// Package doctor checks a running Herald deployment as an operator would
// when something looks wrong: it connects to NATS with the credentials it
// is given and reports, each as a Finding that is ok, a warning or an
// error with the fix, whether NATS is reachable and accepts them, whether
// Herald's streams and buckets have the settings Herald needs, whether the
// signing and event keys are published and trusted by the fleet, how far
// behind and how stale each verifier is, how far each verifier's clock is
// from the issuer's, and whether the keys of every trusted external issuer
// are current. `herald doctor` (cmd/herald) prints the findings.
//
// Run reads only: it never creates, changes or deletes anything, so it
// works with the dashboard role's NATS credentials as well as the
// issuer's.
package doctor

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/heraldsec/herald/bus"
)

// Status is how a check came out.
type Status string

// The statuses, from best to worst.
const (
	OK      Status = "ok"
	Warning Status = "warning"
	Error   Status = "error"
)

// rank orders statuses from best to worst.
func (s Status) rank() int {
	switch s {
	case OK:
		return 0
	case Warning:
		return 1
	}
	return 2
}

// Finding is the outcome of one check: what was checked, how it came out,
// what was seen, and, unless it is ok, what to do about it.
type Finding struct {
	// Check names what was checked: one of the Check constants, or
	// "stream <NAME>" and "bucket <NAME>" for a stream or bucket.
	Check string `json:"check"`
	// Status is ok, warning or error.
	Status Status `json:"status"`
	// Detail says what was seen.
	Detail string `json:"detail"`
	// Fix says what to do; empty for ok findings.
	Fix string `json:"fix,omitempty"`
}

// Names of the checks (Finding.Check). Streams and buckets are checked as
// "stream <NAME>" and "bucket <NAME>".
const (
	CheckNATS       = "nats"
	CheckJetStream  = "jetstream"
	CheckSync       = "nats sync"
	CheckEventKeys  = "event keys"
	CheckTokenKeys  = "signing keys"
	CheckIssuerAPI  = "issuer api"
	CheckTrusted    = "trusted issuers"
	CheckFleet      = "fleet"
	CheckPins       = "pinned event keys"
	CheckClock      = "clock skew"
	checkStreamWord = "stream "
	checkBucketWord = "bucket "
)

// Defaults of Config.
const (
	// DefaultTimeout bounds each request Run makes.
	DefaultTimeout = 5 * time.Second
	// DefaultMaxLag is the lag, in revocations, beyond which a verifier
	// is reported as lagging.
	DefaultMaxLag = 1000
	// ClockSkewError is the clock skew between the issuer and a verifier
	// beyond which it is an error rather than a warning
	// (bus.SkewWarning): the verifiers' default leeway, beyond which
	// tokens are judged expired or not yet valid by the wrong clock.
	ClockSkewError = 30 * time.Second
	// RefreshOverdue is how long after its planned refresh a trusted
	// issuer's keys count as not current.
	RefreshOverdue = 2 * time.Minute
	// MaxVerifiers bounds the heartbeats read from HERALD_VERIFIERS.
	MaxVerifiers = 10_000
	// MaxBucketEntries bounds the entries read from HERALD_KEYS.
	MaxBucketEntries = 16 << 10
)

// Config says what Run checks and how it connects.
type Config struct {
	// Bus is how to connect to NATS. Its Retry is ignored: a server that
	// cannot be reached is a finding, not something to wait for.
	Bus bus.Config
	// IssuerURL is the base URL of an issuer's API. Empty: the checks
	// that need the issuer's view (its clock, its trusted issuers' key
	// refreshes, its JWKS) report that they were not made.
	IssuerURL string
	// AdminToken is an admin credential with the read scope, sent to
	// IssuerURL. It never appears in a finding.
	AdminToken string
	// MonitorURLs are the NATS servers' monitoring endpoints
	// (http://host:8222), for the server settings clients cannot see,
	// such as sync_interval. Empty: not checked.
	MonitorURLs []string
	// EventKeys are the event key kids the deployment pins
	// (--event-keys): each must be published and not revoked. Empty:
	// the published keys are taken as they are.
	EventKeys []string
	// RootKeys are the root key kids the deployment pins (--root-keys):
	// event key revocations they signed are verified.
	RootKeys []string
	// ExpectVerifiers is how many verifiers should report; fewer live
	// ones is an error. Zero: any number.
	ExpectVerifiers int
	// MaxLag is the lag beyond which a verifier is lagging. Default
	// DefaultMaxLag.
	MaxLag uint64
	// Timeout bounds each request. Default DefaultTimeout.
	Timeout time.Duration
	// HTTPClient makes the requests to IssuerURL and MonitorURLs. Nil
	// uses a client with Timeout.
	HTTPClient *http.Client
	// Now is the doctor's clock. Default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.MaxLag == 0 {
		c.MaxLag = DefaultMaxLag
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: c.Timeout}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Worst returns the worst status of findings; OK for none.
func Worst(findings []Finding) Status {
	w := OK
	for _, f := range findings {
		if f.Status.rank() > w.rank() {
			w = f.Status
		}
	}
	return w
}

// Run makes every check and returns the findings in the order they were
// made. It fails only when ctx ends; every problem it meets is a
// finding.
func Run(ctx context.Context, cfg Config) ([]Finding, error) {
	cfg.setDefaults()
	r := &run{cfg: cfg}
	r.check(ctx)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return slices.Clip(r.out), nil
}

// run is one Run: what it learned so far and the findings it made.
type run struct {
	cfg Config
	out []Finding
	// clusterSize is the JetStream cluster's size as the monitoring
	// endpoints report it; 0 when unknown.
	clusterSize int
}

func (r *run) add(check string, st Status, detail, fix string) {
	if st == OK {
		fix = ""
	}
	r.out = append(r.out, Finding{Check: check, Status: st, Detail: detail, Fix: fix})
}

// check runs the checks in order: what cannot be checked because an
// earlier check failed is not reported again.
func (r *run) check(ctx context.Context) {
	conn := r.connect(ctx)
	if conn == nil {
		return
	}
	defer conn.Close()
	if !r.jetStream(ctx, conn) {
		return
	}
	api := r.issuerAPI(ctx)
	r.serverSync(ctx)
	bucket := r.readKeys(ctx, conn)
	r.streams(ctx, conn, bucket)
	current := r.eventKeys(ctx, conn, bucket)
	r.tokenKeys(ctx, conn, bucket)
	r.trusted(bucket, api)
	fleet := r.fleet(ctx, conn)
	r.pins(fleet, bucket, current)
	r.clocks(fleet, api)
}
