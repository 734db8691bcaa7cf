package signals_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/signals"
)

// joseVersion is the npm jose release the interoperability test signs
// with: an independent JOSE implementation.
const joseVersion = "6.2.19"

// joseTokens runs testdata/jose_sign.mjs with npm jose and returns its
// keys and tokens, all issued at iat.
func joseTokens(t *testing.T, iat int64) (keys []bus.JWK, tokens []joseToken) {
	t.Helper()
	if testing.Short() {
		t.Skip("installs npm jose: skipped under -short")
	}
	node, errNode := exec.LookPath("node")
	npm, errNpm := exec.LookPath("npm")
	if errNode != nil || errNpm != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node and npm are not installed, and CI must run the jose interoperability test: apt-get install nodejs npm")
		}
		t.Skip("node or npm is not installed (apt-get install nodejs npm): skipping the jose interoperability test")
	}
	dir := t.TempDir()
	script, err := os.ReadFile(filepath.Join("testdata", "jose_sign.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	// The script imports jose from beside itself.
	if err := os.WriteFile(filepath.Join(dir, "jose_sign.mjs"), script, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund", "--no-save", "jose@"+joseVersion)
	install.Dir = dir
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("npm install jose@%s: %v\n%s", joseVersion, err, out)
	}
	run := exec.CommandContext(ctx, node, "jose_sign.mjs", strconv.FormatInt(iat, 10))
	run.Dir = dir
	run.Stderr = os.Stderr
	out, err := run.Output()
	if err != nil {
		t.Fatalf("node jose_sign.mjs: %v", err)
	}
	var res struct {
		Keys   []bus.JWK   `json:"keys"`
		Tokens []joseToken `json:"tokens"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("jose_sign.mjs output: %v", err)
	}
	return res.Keys, res.Tokens
}

type joseToken struct {
	Name   string `json:"name"`
	Format string `json:"format"`
	Alg    string `json:"alg"`
	Token  string `json:"token"`
}

// TestInterop_Jose parses the CAEP 1.0 and RISC 1.0 example SETs and a
// back-channel logout token, signed by npm jose with RS256, PS256, ES256
// and EdDSA keys, with the public JWKs jose exported, and checks what they
// revoke.
func TestInterop_Jose(t *testing.T) {
	keys, tokens := joseTokens(t, now.Unix())
	const (
		idp        = "https://idp.example.com/"
		idp123     = "https://idp.example.com/123456789/"
		idp987     = "https://idp.example.com/987654321/"
		idp3456789 = "https://idp.example.com/3456789/"
		idp3456790 = "https://idp.example.com/3456790/"
		op         = "https://server.example.com"
	)
	cfg := &signals.Config{
		Sources: []signals.Source{
			{Issuer: idp, ClientID: "636C69656E745F6964", EmailClaim: "email"},
			{Issuer: idp123, Audiences: []string{"https://sp.example.com/caep"}},
			{Issuer: idp987, Audiences: []string{"https://sp.example2.net/caep"}},
			{Issuer: idp3456789, Audiences: []string{"https://sp.example2.net/caep"}},
			{Issuer: idp3456790, Audiences: []string{"https://sp.example2.net/caep"}},
			{Issuer: op, ClientID: "s6BhdRkqt3"},
		},
		Now: func() time.Time { return now },
	}
	// Every source holds jose's keys, as each provider would hold its own.
	ring := keyring{}
	for _, k := range keys {
		pub, err := k.ExternalPublicKey()
		if err != nil {
			t.Fatalf("jose's %s key: %v", k.Alg, err)
		}
		for _, s := range cfg.Sources {
			ring[[2]string{s.Issuer, k.Kid}] = testKey{jwk: k, pub: pub}
		}
	}
	cfg.Keys = ring.fn
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	want := map[string]signals.Outcome{
		"session-revoked-opaque":  {Revoke: true, Kind: bus.KindSession, Value: "dMTlD|1600802906337.16|16008.16", Issuer: idp123},
		"session-revoked-complex": {Revoke: true, Kind: bus.KindSession, Value: "dMTlD|1600802906337.16|16008.16", Issuer: idp123},
		"token-claims-change":     {Revoke: true, Kind: bus.KindToken, Value: "f61t6e20zdo3px56gepu8rzlsp4c1dpc0fx7", Issuer: idp987},
		"credential-change":       {Revoke: true, Kind: bus.KindSubject, Value: "jane.smith@example.com", Issuer: idp3456789},
		"account-disabled":        {Revoke: true, Kind: bus.KindSubject, Value: "7375626A656374", Issuer: idp},
		"account-purged":          {Revoke: true, Kind: bus.KindSubject, Value: "7375626A656374", Issuer: idp},
		"credential-compromise":   {Revoke: true, Kind: bus.KindSubject, Value: "joe.smith@example.com", Issuer: idp3456790},
		"sessions-revoked":        {Revoke: true, Kind: bus.KindSubject, Value: "foo@example.com", Issuer: idp},
		"logout":                  {Revoke: true, Kind: bus.KindSession, Value: "08a5019c-17e1-4977-8f42-65a12843ea02", Issuer: op},
	}
	algs := map[string]bool{}
	for _, tok := range tokens {
		t.Run(tok.Name+"/"+tok.Alg, func(t *testing.T) {
			var got signals.Outcome
			switch tok.Format {
			case "set":
				s, err := signals.ParseSET(tok.Token, cfg)
				if err != nil {
					t.Fatal(err)
				}
				src, _ := cfg.Source(s.Issuer)
				if got, err = s.Revocation(src.Events, src.EmailClaim); err != nil {
					t.Fatal(err)
				}
				// A SET is not a logout token, whatever its claims.
				if _, err := signals.ParseLogoutToken(tok.Token, cfg); signals.Code(err) != signals.CodeInvalidRequest {
					t.Fatalf("SET taken as a logout token: %v", err)
				}
			case "logout":
				l, err := signals.ParseLogoutToken(tok.Token, cfg)
				if err != nil {
					t.Fatal(err)
				}
				got = l.Revocation()
				if _, err := signals.ParseSET(tok.Token, cfg); signals.Code(err) != signals.CodeInvalidRequest {
					t.Fatalf("logout token taken as a SET: %v", err)
				}
			default:
				t.Fatalf("unknown format %q", tok.Format)
			}
			got.Note = ""
			if w, ok := want[tok.Name]; !ok || got != w {
				t.Fatalf("outcome = %+v, want %+v", got, w)
			}
			algs[tok.Alg] = true
		})
	}
	if len(tokens) != len(want)-1+4 || len(algs) != 4 {
		t.Fatalf("jose signed %d tokens with %d algorithms, want %d with 4", len(tokens), len(algs), len(want)-1+4)
	}
}
