package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/federation"
	"github.com/heraldsec/herald/issuer"
)

// Defaults for LogoutConfig.
const (
	DefaultLogoutVerifiers = 3
	DefaultLogouts         = 100
)

// LogoutConfig configures Logout.
type LogoutConfig struct {
	// Verifiers is how many in-process verifier sidecars must refuse each
	// logged-out session. Default DefaultLogoutVerifiers.
	Verifiers int
	// Logouts is how many back-channel logouts, and as many native
	// session revocations, are measured. Default DefaultLogouts.
	Logouts int
	// Dir holds all data. Required.
	Dir string
	// SettleTimeout bounds one logout. Default DefaultSettleTimeout.
	SettleTimeout time.Duration
	// Progress, if not nil, receives progress lines.
	Progress *Progress
}

// LogoutResult holds both measurements of a Logout run.
type LogoutResult struct {
	Verifiers int    `json:"verifiers"`
	Logouts   int    `json:"logouts"`
	Detection string `json:"detection"`
	// Logout is the time from an identity provider's back-channel logout
	// POST to every verifier refusing that session's access token: one
	// sample per logout, when the last verifier refused.
	Logout Summary `json:"backchannel_logout"`
	// LogoutCall is how long the logout POST took.
	LogoutCall Summary `json:"backchannel_logout_call"`
	// Native is the same for a Herald session revocation
	// (POST /v1/revocations, kind session), in the same run.
	Native Summary `json:"native_session_revoke"`
	// NativeCall is how long that POST took.
	NativeCall Summary `json:"native_session_revoke_call"`
	// P50Ratio and P99Ratio are Logout's over Native's: the target is at
	// most 1.2.
	P50Ratio float64 `json:"p50_ratio"`
	P99Ratio float64 `json:"p99_ratio"`
}

// Logout measures what an identity provider's logout costs next to a
// revocation made in Herald. It runs an OpenID provider in this process
// (discovery, key set, an RSA key that signs access and logout tokens),
// an issuer that trusts it, and cfg.Verifiers sidecars. Then, one after
// another and interleaved, it revokes a Herald session with POST
// /v1/revocations and logs a provider session out with POST
// /oidc/backchannel-logout, each over HTTP, and times each from the
// POST to the moment every verifier refuses that session's token. Each
// token is verified by every verifier first, as a session in use is, so
// both are refused from the verifiers' caches and the times compare the
// revocations, not RSA with EdDSA signature checks.
func Logout(ctx context.Context, cfg LogoutConfig) (*LogoutResult, error) {
	if cfg.Verifiers <= 0 {
		cfg.Verifiers = DefaultLogoutVerifiers
	}
	if cfg.Logouts <= 0 {
		cfg.Logouts = DefaultLogouts
	}
	if cfg.SettleTimeout <= 0 {
		cfg.SettleTimeout = DefaultSettleTimeout
	}
	if cfg.Dir == "" {
		return nil, errors.New("logout: dir is required")
	}
	p := cfg.Progress
	idp, err := startBenchIdP()
	if err != nil {
		return nil, fmt.Errorf("logout: %w", err)
	}
	defer idp.Close()
	trust := []federation.Issuer{federation.Issuer{URL: idp.url, Tokens: true, Audience: []string{benchAudience}}.WithDefaults()}
	c, err := startCoreWith(ctx, cfg.Dir, true, trust)
	if err != nil {
		return nil, fmt.Errorf("logout: %w", err)
	}
	defer c.Close()
	fleet, err := startInProcFleet(ctx, c, PropagationConfig{Mode: ModeInProc, Verifiers: cfg.Verifiers, Dir: cfg.Dir, Progress: p})
	defer fleet.Close()
	if err != nil {
		return nil, fmt.Errorf("logout: %w", err)
	}
	probe, err := idp.accessToken("probe", "probe")
	if err != nil {
		return nil, fmt.Errorf("logout: %w", err)
	}
	for i, sc := range fleet.sidecars {
		err := waitUntil(ctx, time.Minute, func() bool {
			_, err := sc.Verifier().Verify(ctx, probe)
			return err == nil
		})
		if err != nil {
			return nil, fmt.Errorf("logout: verifier %d never accepted the provider's tokens: %w", i, err)
		}
	}

	p.Phasef("logout: creating %d Herald sessions", cfg.Logouts)
	sessions, err := c.sessions(ctx, cfg.Logouts, "bench-logout", p)
	if err != nil {
		return nil, fmt.Errorf("logout: %w", err)
	}
	_, seq, err := c.conn.StreamHead(ctx, bus.StreamRevocations)
	if err != nil {
		return nil, fmt.Errorf("logout: %w", err)
	}
	client := &http.Client{Timeout: cfg.SettleTimeout}
	// measure has every verifier accept token (a session in use, its
	// token verified and cached, as when its user logs out), arms the
	// fleet with it, runs post and returns how long until every verifier
	// refused token, and how long post took.
	measure := func(token string, post func() error) (time.Duration, time.Duration, error) {
		for i, sc := range fleet.sidecars {
			if _, err := sc.Verifier().Verify(ctx, token); err != nil {
				return 0, 0, fmt.Errorf("verifier %d refused the token before its revocation: %w", i, err)
			}
		}
		seq++
		wait, err := fleet.Arm(ctx, token, seq)
		if err != nil {
			return 0, 0, err
		}
		start := time.Now()
		if err := post(); err != nil {
			wait(0)
			return 0, 0, err
		}
		call := time.Since(start)
		times, err := wait(cfg.SettleTimeout)
		if err != nil {
			return 0, 0, err
		}
		var last time.Time
		for _, t := range times {
			if t.After(last) {
				last = t
			}
		}
		return max(0, last.Sub(start)), call, nil
	}
	issuerURL := c.svc.URL()
	var logout, logoutCalls, native, nativeCalls []time.Duration
	p.Phasef("logout: %d native session revocations and %d back-channel logouts, interleaved, to %d verifiers", cfg.Logouts, cfg.Logouts, cfg.Verifiers)
	for i, s := range sessions {
		d, call, err := measure(s.AccessToken, func() error {
			return postRevocation(ctx, client, issuerURL, s.SessionID)
		})
		if err != nil {
			return nil, fmt.Errorf("logout: native revocation %d: %w", i, err)
		}
		native, nativeCalls = append(native, d), append(nativeCalls, call)

		sid := fmt.Sprintf("idp-session-%d", i)
		tok, err := idp.accessToken(fmt.Sprintf("user-%d", i), sid)
		if err != nil {
			return nil, fmt.Errorf("logout: %w", err)
		}
		lt, err := idp.logoutToken(sid)
		if err != nil {
			return nil, fmt.Errorf("logout: %w", err)
		}
		d, call, err = measure(tok, func() error { return postLogout(ctx, client, issuerURL, lt) })
		if err != nil {
			return nil, fmt.Errorf("logout: back-channel logout %d: %w", i, err)
		}
		logout, logoutCalls = append(logout, d), append(logoutCalls, call)
		p.Step("logouts and revocations", i+1, cfg.Logouts)
	}
	res := &LogoutResult{Verifiers: cfg.Verifiers, Logouts: cfg.Logouts, Detection: fleet.Detection(),
		Logout: Summarize(logout), LogoutCall: Summarize(logoutCalls),
		Native: Summarize(native), NativeCall: Summarize(nativeCalls)}
	res.P50Ratio = ratio(float64(res.Logout.P50), float64(res.Native.P50))
	res.P99Ratio = ratio(float64(res.Logout.P99), float64(res.Native.P99))
	if err := fleet.Close(); err != nil {
		return nil, fmt.Errorf("logout: stop verifiers: %w", err)
	}
	return res, nil
}

// postRevocation revokes session sid through the issuer's API.
func postRevocation(ctx context.Context, client *http.Client, issuerURL, sid string) error {
	body, err := json.Marshal(issuer.RevocationRequest{Kind: "session", Value: sid, Reason: "bench"})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, issuerURL+"/v1/revocations", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+benchAdminToken)
	req.Header.Set("Content-Type", "application/json")
	return expectStatus(client, req, http.StatusOK)
}

// postLogout posts a back-channel logout token to the issuer.
func postLogout(ctx context.Context, client *http.Client, issuerURL, token string) error {
	form := url.Values{"logout_token": {token}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, issuerURL+issuer.BackChannelLogoutPath, bytes.NewReader([]byte(form)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return expectStatus(client, req, http.StatusOK)
}

// expectStatus sends req and fails unless it is answered with want.
func expectStatus(client *http.Client, req *http.Request, want int) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// benchIdP is an OpenID provider in the bench's process: a discovery
// document, a key set with one RSA key, and the tokens that key signs.
type benchIdP struct {
	srv *http.Server
	ln  net.Listener
	url string
	key *rsa.PrivateKey
}

const benchIdPKid = "bench-idp-1"

func startBenchIdP() (*benchIdP, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	idp := &benchIdP{ln: ln, url: "http://" + ln.Addr().String(), key: key}
	jwk, err := bus.NewJWK(&key.PublicKey)
	if err != nil {
		ln.Close()
		return nil, err
	}
	jwk.Kid = benchIdPKid
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": idp.url, "jwks_uri": idp.url + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"keys": []bus.JWK{jwk}})
	})
	idp.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go idp.srv.Serve(ln)
	return idp, nil
}

// Close stops the provider.
func (idp *benchIdP) Close() error { return idp.srv.Close() }

func (idp *benchIdP) sign(typ string, claims jwt.MapClaims) (string, error) {
	now := time.Now()
	claims["iss"], claims["iat"], claims["jti"] = idp.url, now.Unix(), bus.NewID()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"], tok.Header["typ"] = benchIdPKid, typ
	return tok.SignedString(idp.key)
}

// accessToken returns an access token of the provider for sub in session sid.
func (idp *benchIdP) accessToken(sub, sid string) (string, error) {
	return idp.sign("JWT", jwt.MapClaims{"sub": sub, "sid": sid, "aud": benchAudience,
		"exp": time.Now().Add(10 * time.Minute).Unix()})
}

// logoutToken returns a back-channel logout token for session sid.
func (idp *benchIdP) logoutToken(sid string) (string, error) {
	return idp.sign("logout+jwt", jwt.MapClaims{"aud": federation.DefaultClientID, "sid": sid,
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}})
}
