package ssf

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
)

// The inputs of the example SETs of docs/ssf.md.
const (
	docIss      = "https://herald.example.com"
	docStream   = "f67e39a0a4d34d56b3aa1bc4cff0069f"
	docReceiver = "saas-receiver"
)

// docExamples returns the claims of the example SETs of docs/ssf.md, by
// name: what the transmitter signs for a session revocation, a subject
// revocation and a verification asked for by the receiver.
func docExamples(t *testing.T) map[string]*Claims {
	t.Helper()
	at := func(hhmm string) time.Time {
		tm, err := time.Parse(time.RFC3339, "2026-12-03T"+hhmm+":00Z")
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	rev := func(id, when, actor string, k bus.Kind, value, reason string) *bus.Event {
		return &bus.Event{ID: id, Type: bus.TypeRevocation, Time: at(when), Actor: actor, Revocation: &bus.Revocation{
			Kind: k, Value: value, Reason: reason, At: at(when), Until: at(when).Add(16 * time.Minute)}}
	}
	claims := func(eventID string, when time.Time, it Item) *Claims {
		return &Claims{Issuer: docIss, JTI: JTI(docStream, eventID, it.Index), IssuedAt: when.Unix(),
			Audience: []string{docReceiver}, TXN: eventID, Subject: it.Subject, Type: it.Type, Event: it.Event}
	}
	session := rev("0193a5c2e8f04b7c9d1e2f3a4b5c6d7e", "14:00", "ops", bus.KindSession, "5f1c2a9e8b7d4c3f", "laptop reported stolen")
	subject := rev("0193a5c31b2e4d5f8a9b0c1d2e3f4a5b", "14:05", "ops", bus.KindSubject, "user-4711", "")
	out := map[string]*Claims{
		"session": claims(session.ID, session.Time, Map(session, docIss)[0]),
		"subject": claims(subject.ID, subject.Time, Map(subject, docIss)[0]),
		"verification": claims("0193a5c4aa6b4c7d8e9f0a1b2c3d4e5f", at("14:10"),
			Verification(docStream, "VGhpcyBpcyBhbiBleGFtcGxl")),
	}
	return out
}

// exampleBlock matches a fenced block of docs/ssf.md after its marker.
var exampleBlock = regexp.MustCompile("(?s)<!-- ssf-example: ([a-z -]+) -->\\s*```[a-z]*\\n(.*?)```")

// TestDocsExamples checks the SETs shown in docs/ssf.md: each verifies
// with the key set shown there, its header is the one Sign writes, and
// its claims are exactly what Map and Sign make of the documented
// revocations today (shown decoded, indented, as the SET holds them).
func TestDocsExamples(t *testing.T) {
	doc, err := os.ReadFile("../docs/ssf.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string]string{}
	for _, m := range exampleBlock.FindAllStringSubmatch(string(doc), -1) {
		blocks[m[1]] = m[2]
	}
	var set struct {
		Keys []bus.JWK `json:"keys"`
	}
	if err := json.Unmarshal([]byte(blocks["jwks"]), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("key set block: %v, %d keys", err, len(set.Keys))
	}
	jwk := set.Keys[0]
	pubKey, err := jwk.ExternalPublicKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := pubKey.(*rsa.PublicKey)
	if jwk.Kid != jwk.Thumbprint() || jwk.Use != "sig" || jwk.Alg != bus.AlgRS256 {
		t.Fatalf("documented key %+v: kid, use or alg is not what JWKS writes", jwk)
	}
	header := `{"alg":"RS256","kid":"` + jwk.Kid + `","typ":"secevent+jwt"}`
	if got := strings.TrimSpace(blocks["header"]); got != indent(t, []byte(header)) {
		t.Errorf("documented header\n%s\nwant\n%s", got, indent(t, []byte(header)))
	}
	for name, c := range docExamples(t) {
		t.Run(name, func(t *testing.T) {
			compact := strings.TrimSpace(blocks[name+" compact"])
			parts := strings.Split(compact, ".")
			if len(parts) != 3 {
				t.Fatalf("compact block %q is not a compact JWS", compact)
			}
			sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
			if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], decodePart(t, parts[2])); err != nil {
				t.Fatalf("documented SET does not verify with the documented key: %v", err)
			}
			if got := string(decodePart(t, parts[0])); got != header {
				t.Errorf("header %s, want %s", got, header)
			}
			want, err := encodeClaims(c)
			if err != nil {
				t.Fatal(err)
			}
			if got := decodePart(t, parts[1]); !bytes.Equal(got, want) {
				t.Errorf("documented claims\n%s\nare not what Herald signs today\n%s", got, want)
			}
			if got := strings.TrimSpace(blocks[name+" claims"]); got != indent(t, want) {
				t.Errorf("decoded claims shown\n%s\nwant\n%s", got, indent(t, want))
			}
		})
	}
}

// indent returns the JSON b indented by two spaces, as the docs show it.
func indent(t *testing.T, b []byte) string {
	t.Helper()
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		t.Fatal(err)
	}
	return out.String()
}
