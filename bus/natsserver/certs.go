package natsserver

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Lifetimes of the certificates EnsureAuthFiles makes. The server
// certificate is reissued once less than certRenewBefore of it is left,
// at the server's next start.
const (
	caLifetime      = 10 * 365 * 24 * time.Hour
	certLifetime    = 365 * 24 * time.Hour
	certRenewBefore = 30 * 24 * time.Hour
)

// certKey is a PEM certificate with its PEM (PKCS#8) private key.
type certKey struct {
	certPEM, keyPEM []byte
	cert            *x509.Certificate
	key             crypto.Signer
}

// newCA makes a self-signed ECDSA P-256 certificate authority.
func newCA(now time.Time) (*certKey, error) {
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "Herald NATS CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	return issueCert(tmpl, nil)
}

// newServerCert makes an ECDSA P-256 server certificate for hosts (IP
// addresses or DNS names), signed by ca.
func newServerCert(ca *certKey, hosts []string, now time.Time) (*certKey, error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "Herald NATS server"},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(certLifetime),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return issueCert(tmpl, ca)
}

// issueCert makes a new key and signs tmpl with it (self-signed, when
// parent is nil) or with parent's key.
func issueCert(tmpl *x509.Certificate, parent *certKey) (*certKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	signerCert, signerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		signerCert, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return parseCertKey(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
}

// parseCertKey parses a PEM certificate and its key, and checks that
// they belong together.
func parseCertKey(certPEM, keyPEM []byte) (*certKey, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("private key cannot sign")
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	return &certKey{certPEM: certPEM, keyPEM: keyPEM, cert: cert, key: key}, nil
}

// checkServerCert reports why cert cannot serve hosts until at least
// certRenewBefore after now under ca, nil if it can.
func checkServerCert(cert *x509.Certificate, ca *x509.Certificate, hosts []string, now time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, h := range hosts {
		_, err := cert.Verify(x509.VerifyOptions{
			Roots: roots, DNSName: h, CurrentTime: now.Add(certRenewBefore),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if err != nil {
			return fmt.Errorf("server certificate for %s: %w", h, err)
		}
	}
	return nil
}
