// Package tlspin makes TLS between a node and a remote VM work without a
// PKI: each side presents a self-signed certificate, and the other checks
// its SHA-256 fingerprint, handed over out of band (the engine's in the
// VM's environment, the VM's in its Initialize).
package tlspin

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/vmre/vmre/internal/atomicfile"
)

// Fingerprint is the SHA-256 of a DER certificate, in lowercase hex, as
// `openssl x509 -noout -fingerprint -sha256` prints it without colons.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// SelfSigned makes an ECDSA P-256 certificate for hosts (IP addresses or
// names), valid for the given time.
func SelfSigned(hosts []string, validFor time.Duration) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	return certify(key, hosts, validFor)
}

// certify makes a self-signed certificate of key for hosts.
func certify(key *ecdsa.PrivateKey, hosts []string, validFor time.Duration) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "vmre"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// selfSignedValidity is how long LoadOrCreate's certificates are valid.
const selfSignedValidity = 10 * 365 * 24 * time.Hour

// LoadOrCreate loads the certificate and key at certFile and keyFile (PEM),
// or, when neither exists, makes a self-signed one valid for ten years and
// writes them there (the key readable by its owner only). The two are one
// unit: the key is written first and the certificate second, each whole or
// not at all (internal/atomicfile), and a key found alone (a crash came
// between the two writes) is completed with a certificate of that key. A
// certificate was only ever published once it was written, so completing
// never changes a fingerprint that remote VMs pin; a certificate found
// without its key is an error that names both files.
func LoadOrCreate(certFile, keyFile string, hosts []string) (tls.Certificate, error) {
	_, certErr := os.Stat(certFile)
	keyPEM, keyErr := os.ReadFile(keyFile)
	switch {
	case certErr == nil && keyErr == nil:
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("load the pair %s and %s: %w", certFile, keyFile, err)
		}
		return cert, nil
	case certErr == nil && errors.Is(keyErr, os.ErrNotExist):
		return tls.Certificate{}, fmt.Errorf("the certificate %s has no key %s: put the key back (remote VMs pin this certificate); "+
			"or remove the certificate too, and a new pair is made, whose fingerprint every remote VM must then be given", certFile, keyFile)
	case !errors.Is(certErr, os.ErrNotExist):
		return tls.Certificate{}, certErr
	case keyErr == nil:
		key, err := parseKey(keyPEM)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("%s: %w", keyFile, err)
		}
		cert, err := certify(key, hosts, selfSignedValidity)
		if err != nil {
			return tls.Certificate{}, err
		}
		return cert, writeCert(certFile, cert)
	case !errors.Is(keyErr, os.ErrNotExist):
		return tls.Certificate{}, keyErr
	}
	cert, err := SelfSigned(hosts, selfSignedValidity)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := atomicfile.Write(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return tls.Certificate{}, err
	}
	return cert, writeCert(certFile, cert)
}

// writeCert writes cert's PEM to certFile, whole or not at all.
func writeCert(certFile string, cert tls.Certificate) error {
	return atomicfile.Write(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644)
}

// parseKey reads the PEM of an ECDSA key in PKCS #8, as LoadOrCreate
// writes it.
func parseKey(b []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM \"PRIVATE KEY\"")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T key, not ECDSA", k)
	}
	return key, nil
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

// ClientConfig is the TLS configuration of a client that trusts exactly the
// server certificate whose fingerprint is want, and nothing else.
func ClientConfig(want string) *tls.Config {
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
	}
}

// ServerConfig is the TLS configuration of a server presenting cert; an
// http.Server given it adds the protocols it speaks (h2, http/1.1).
func ServerConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
	}
}

// Pings are the HTTP/2 health checks of a TLS connection that carries a
// lease: a connection silent for Interval gets a ping, and one whose ping
// is unanswered for Timeout is closed, which ends its streams. A cut link
// is so noticed within Interval + Timeout, where TCP alone would take many
// minutes.
type Pings struct {
	Interval, Timeout time.Duration
}

// DefaultPings notice a cut link within 10 s.
var DefaultPings = Pings{Interval: 5 * time.Second, Timeout: 5 * time.Second}

// HTTP2 is the HTTP/2 configuration of the pings.
func (p Pings) HTTP2() *http.HTTP2Config {
	if p.Interval <= 0 {
		p = DefaultPings
	}
	return &http.HTTP2Config{SendPingTimeout: p.Interval, PingTimeout: p.Timeout}
}

// NewClient returns an HTTP client for https:// URLs that trusts exactly
// the server certificate of fingerprint want, speaks HTTP/2 (and HTTP/1.1
// to servers without it), and pings its connections.
func NewClient(want string, pings Pings) *http.Client {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	return &http.Client{Transport: &http.Transport{
		Protocols:           &protocols,
		TLSClientConfig:     ClientConfig(want),
		HTTP2:               pings.HTTP2(),
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     2 * time.Minute,
	}}
}
