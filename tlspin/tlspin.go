// Package tlspin makes a TLS client that trusts exactly one certificate,
// named by its SHA-256 fingerprint, with no PKI: how a caller reaches a
// remote VM's server, whose fingerprint the node publishes (cert_sha256 in
// /v1/vms, the admin service and vmre ps --json), and how a remote VM
// reaches its node's engine (VMRE_RUNTIME_ENGINE_CERT_SHA256). See
// docs/REMOTE.md.
//
//	c, err := tlspin.NewClient(vm.GetCertSha256(), tlspin.Pings{})
//	if err != nil { ... } // not a fingerprint
//	chain := examplev1connect.NewChainServiceClient(c, "https://"+vm.GetAddr(), connect.WithGRPC())
package tlspin

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// Fingerprint is the SHA-256 of a DER certificate, in lowercase hex, as
// `openssl x509 -noout -fingerprint -sha256` prints it without colons.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// PublicKeyPin is the SHA-256 of the certificate's public key (its DER
// SubjectPublicKeyInfo) in standard base64: what curl's --pinnedpubkey
// takes after "sha256//", and what the node publishes as
// cert_spki_sha256.
func PublicKeyPin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// ErrNotFingerprint is the error of a string that is not a SHA-256
// fingerprint.
var ErrNotFingerprint = errors.New("not a SHA-256 fingerprint")

// ParseFingerprint returns the fingerprint s in the form Fingerprint
// gives: 64 lowercase hex digits. It takes them in either case, and with
// the colons of openssl's "AB:CD:..." too; anything else is an error
// wrapping ErrNotFingerprint that says what is wrong.
func ParseFingerprint(s string) (string, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if strings.Count(t, ":") == sha256.Size-1 {
		t = strings.ReplaceAll(t, ":", "")
	}
	switch {
	case t == "":
		return "", fmt.Errorf("%w: it is empty; want the 64 hex digits of a certificate's SHA-256", ErrNotFingerprint)
	case len(t) != 2*sha256.Size:
		return "", fmt.Errorf("%w: %q has %d characters; want 64 hex digits, the SHA-256 of a DER certificate", ErrNotFingerprint, s, len(t))
	case strings.Trim(t, "0123456789abcdef") != "":
		return "", fmt.Errorf("%w: %q has characters that are not hex digits; want 64 of 0-9 and a-f", ErrNotFingerprint, s)
	}
	return t, nil
}

// MismatchError is the error of a peer whose certificate is not the one
// expected.
type MismatchError struct {
	Want, Got string // fingerprints
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("the server's certificate has SHA-256 %s, not the expected %s: "+
		"this is not the server the fingerprint names (or its certificate changed)", e.Got, e.Want)
}

// Config is the TLS configuration of a client that trusts exactly the
// server certificate whose fingerprint is certSHA256 (ParseFingerprint's
// forms), and nothing else: no CA, no host name. A handshake with any
// other certificate fails with a *MismatchError.
func Config(certSHA256 string) (*tls.Config, error) {
	want, err := ParseFingerprint(certSHA256)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The chain is not checked against any CA: the fingerprint below is
		// the whole of the trust.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server presented no certificate")
			}
			got := Fingerprint(cs.PeerCertificates[0].Raw)
			if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
				return &MismatchError{Want: want, Got: got}
			}
			return nil
		},
	}, nil
}

// Pings are the HTTP/2 health checks of a connection: a connection silent
// for Interval gets a ping, and one whose ping is unanswered for Timeout
// is closed, which ends its streams. A cut link is so noticed within
// Interval + Timeout, where TCP alone would take many minutes.
type Pings struct {
	Interval, Timeout time.Duration
}

// DefaultPings notice a cut link within 10 s.
var DefaultPings = Pings{Interval: 5 * time.Second, Timeout: 5 * time.Second}

// HTTP2 is the HTTP/2 configuration of the pings: DefaultPings when
// Interval is zero, and a Timeout of Interval when Timeout is zero.
func (p Pings) HTTP2() *http.HTTP2Config {
	if p.Interval <= 0 {
		p = DefaultPings
	}
	if p.Timeout <= 0 {
		p.Timeout = p.Interval
	}
	return &http.HTTP2Config{SendPingTimeout: p.Interval, PingTimeout: p.Timeout}
}

// NewClient returns an HTTP client for https:// URLs that trusts exactly
// the server certificate of fingerprint certSHA256, speaks HTTP/2 (and
// HTTP/1.1 to servers without it), and pings its connections (the zero
// Pings: DefaultPings). Its error is that of a string that is not a
// fingerprint. Close its idle connections (CloseIdleConnections) when done.
func NewClient(certSHA256 string, pings Pings) (*http.Client, error) {
	cfg, err := Config(certSHA256)
	if err != nil {
		return nil, err
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	return &http.Client{Transport: &http.Transport{
		Protocols:           &protocols,
		TLSClientConfig:     cfg,
		HTTP2:               pings.HTTP2(),
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     2 * time.Minute,
	}}, nil
}
