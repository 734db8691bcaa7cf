package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/heraldsec/herald/issuer"
)

// clientFlags locate the issuer and the admin credential.
type clientFlags struct {
	issuerURL, tokenFile string
	timeout              time.Duration
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.issuerURL, "issuer-url", "http://"+issuer.DefaultHTTPAddr, "base URL of the issuer API")
	fs.StringVar(&c.tokenFile, "admin-token-file", filepath.Join(defaultDataDir, issuer.AdminTokenFile),
		"file holding the admin token, used when HERALD_ADMIN_TOKEN is not set")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "request timeout")
}

// adminToken returns the admin credential from HERALD_ADMIN_TOKEN or the
// token file; never from a flag, so it stays out of shell history and ps.
func (c *clientFlags) adminToken() (string, error) {
	if t := os.Getenv("HERALD_ADMIN_TOKEN"); t != "" {
		return t, nil
	}
	b, err := os.ReadFile(c.tokenFile)
	if err != nil {
		return "", fmt.Errorf("admin token: set HERALD_ADMIN_TOKEN or --admin-token-file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// post sends an admin JSON request and decodes the JSON answer into out.
func (c *clientFlags) post(ctx context.Context, path string, in, out any) error {
	return c.call(ctx, http.MethodPost, path, in, out)
}

// call sends an admin request (with a JSON body when in is not nil) and
// decodes the JSON answer into out.
func (c *clientFlags) call(ctx context.Context, method, path string, in, out any) error {
	req, cancel, err := c.request(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer cancel()
	return doJSON(req, out)
}

// request builds an admin request with the credential and a timeout.
func (c *clientFlags) request(ctx context.Context, method, path string, in any) (*http.Request, context.CancelFunc, error) {
	tok, err := c.adminToken()
	if err != nil {
		return nil, nil, err
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, nil, err
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.issuerURL, "/")+path, body)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return req, cancel, nil
}

// doJSON runs req and decodes a 2xx JSON answer into out, or returns the
// API's error description.
func doJSON(req *http.Request, out any) error {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s %s: %s: %s: %s", req.Method, req.URL.Path, resp.Status, e.Error, e.Description)
		}
		return fmt.Errorf("%s %s: %s", req.Method, req.URL.Path, resp.Status)
	}
	if out == nil || len(data) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", req.Method, req.URL.Path, err)
	}
	return nil
}
