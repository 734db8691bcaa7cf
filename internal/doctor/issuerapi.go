package doctor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/heraldsec/herald/federation"
)

// issuerView is what the issuer's API tells of the deployment (GET
// /v1/verifiers): its own clock against the NATS server's and the state
// of its trusted issuers' keys.
type issuerView struct {
	url string
	// clockOffset is the issuer's clock minus the NATS server's; known
	// says whether the issuer could measure it.
	clockOffset time.Duration
	clockKnown  bool
	trusted     []federation.IssuerStatus
}

// fleetAnswer is what issuerAPI reads of GET /v1/verifiers.
type fleetAnswer struct {
	ClockOffsetMS  *int64                    `json:"clock_offset_ms"`
	TrustedIssuers []federation.IssuerStatus `json:"trusted_issuers"`
}

// issuerAPI reads the issuer's view when an issuer URL is given; nil
// otherwise, or when the issuer cannot be read.
func (r *run) issuerAPI(ctx context.Context) *issuerView {
	if r.cfg.IssuerURL == "" {
		return nil
	}
	base := strings.TrimRight(r.cfg.IssuerURL, "/")
	if r.cfg.AdminToken == "" {
		r.add(CheckIssuerAPI, Warning, "not checked: no admin credential to read the issuer's view at "+base,
			"set HERALD_ADMIN_TOKEN or --admin-token-file to an admin credential with the read scope (herald credential create doctor --scopes read)")
		return nil
	}
	var fa fleetAnswer
	if err := r.getJSON(ctx, base+"/v1/verifiers", r.cfg.AdminToken, &fa); err != nil {
		var he *httpError
		fix := "check --issuer-url: the issuer's API (herald issuer --http), reachable from this host; give --issuer-url '' to skip the issuer's view"
		if errors.As(err, &he) && (he.code == http.StatusUnauthorized || he.code == http.StatusForbidden) {
			fix = "the issuer refused the admin credential: set HERALD_ADMIN_TOKEN or --admin-token-file to one with the read scope"
		}
		r.add(CheckIssuerAPI, Error, fmt.Sprintf("GET %s/v1/verifiers: %v", base, err), fix)
		return nil
	}
	v := &issuerView{url: base, trusted: fa.TrustedIssuers}
	if fa.ClockOffsetMS != nil {
		v.clockOffset, v.clockKnown = time.Duration(*fa.ClockOffsetMS)*time.Millisecond, true
	}
	r.add(CheckIssuerAPI, OK, "read the issuer's view at "+base, "")
	return v
}

// trusted checks each trusted external issuer: that its keys are
// published for the verifiers, and, from the issuer's view, that they
// were fetched recently and their last refresh did not fail.
func (r *run) trusted(keys *keysBucket, api *issuerView) {
	if keys == nil {
		return
	}
	now := r.cfg.Now()
	seen := make(map[string]bool)
	if api != nil {
		for _, is := range api.trusted {
			seen[is.Issuer] = true
			published, tokens := keys.external[is.Issuer], keys.trusts[is.Issuer]
			switch {
			case is.LastError != "":
				since := ""
				if !is.ErrorSince.IsZero() {
					since = fmt.Sprintf(" for %s", now.Sub(is.ErrorSince).Round(time.Second))
				}
				r.add(CheckTrusted, Error, fmt.Sprintf("%s: fetching its keys fails%s: %s (verifiers keep its last good keys: %d published)", is.Issuer, since, is.LastError, published),
					"check that the issuer reaches "+is.Issuer+"'s discovery document and jwks_uri (DNS, proxy, TLS, firewall); once a refresh succeeds this clears by itself")
			case is.LastRefresh.IsZero():
				r.add(CheckTrusted, Warning, fmt.Sprintf("%s: its keys have not been fetched yet", is.Issuer),
					"wait for the issuer's first refresh; if it stays so, check the issuer's logs for "+is.Issuer)
			case !is.NextRefresh.IsZero() && now.Sub(is.NextRefresh) > RefreshOverdue:
				r.add(CheckTrusted, Warning, fmt.Sprintf("%s: its keys were last fetched %s ago, and the refresh planned %s ago has not happened", is.Issuer,
					now.Sub(is.LastRefresh).Round(time.Second), now.Sub(is.NextRefresh).Round(time.Second)),
					"check that the issuer is running and not stuck (its logs, /readyz)")
			case is.Tokens && tokens && published == 0:
				r.add(CheckTrusted, Error, fmt.Sprintf("%s: no key of it is published in HERALD_KEYS: verifiers refuse its tokens", is.Issuer),
					"check the issuer's logs for the keys it skipped and why (herald status --fleet lists them)")
			default:
				r.add(CheckTrusted, OK, fmt.Sprintf("%s: %d keys, fetched %s ago; %d published for the verifiers", is.Issuer, is.Keys,
					now.Sub(is.LastRefresh).Round(time.Second), published), "")
			}
		}
	}
	for _, iss := range slices.Sorted(maps.Keys(keys.trusts)) {
		if seen[iss] {
			continue
		}
		switch {
		case keys.external[iss] == 0:
			r.add(CheckTrusted, Error, fmt.Sprintf("%s: trusted, but no key of it is published in HERALD_KEYS: verifiers refuse its tokens", iss),
				"check that the issuer reaches "+iss+"'s jwks_uri, and its logs")
		case api == nil:
			r.add(CheckTrusted, Warning, fmt.Sprintf("%s: %d keys published; whether they are current is not checked", iss, keys.external[iss]),
				"give --issuer-url and an admin credential with the read scope: the issuer knows when it last fetched them")
		default:
			r.add(CheckTrusted, Warning, fmt.Sprintf("%s: trusted in HERALD_KEYS, but not by the issuer at %s", iss, api.url),
				"another issuer publishes this trust, or it was configured and removed: check every issuer's --trust file")
		}
	}
	if len(seen) == 0 && len(keys.trusts) == 0 {
		r.add(CheckTrusted, OK, "no external issuer is trusted", "")
	}
}
