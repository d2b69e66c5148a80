// Package tlscert makes and keeps the self-signed certificates of TLS
// between a node and a remote VM, which work without a PKI: each side
// presents one, and the other checks its SHA-256 fingerprint (package
// tlspin), handed over out of band (the engine's in the VM's environment,
// the VM's in its Initialize).
package tlscert

import (
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
	"os"
	"time"

	"github.com/vmre/vmre/internal/atomicfile"
)

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

// ServerConfig is the TLS configuration of a server presenting cert; an
// http.Server given it adds the protocols it speaks (h2, http/1.1).
func ServerConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
	}
}
