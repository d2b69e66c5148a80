package tlspin_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/tlscert"
	"github.com/vmre/vmre/tlspin"
)

// TestPinnedTLS: a client given a server's fingerprint, in any of the
// forms it takes, reaches it; one given another's is refused with a
// MismatchError that names the server's.
func TestPinnedTLS(t *testing.T) {
	t.Parallel()
	cert, err := tlscert.SelfSigned([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := tlscert.SelfSigned([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(r.Proto)) }),
		TLSConfig: tlscert.ServerConfig(cert),
		ErrorLog:  log.New(io.Discard, "", 0), // the refused handshake
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { srv.Shutdown(context.Background()); <-done })

	get := func(fp string) (string, error) {
		c, err := tlspin.NewClient(fp, tlspin.Pings{})
		if err != nil {
			return "", err
		}
		defer c.CloseIdleConnections()
		res, err := c.Get("https://" + ln.Addr().String())
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return string(b), err
	}
	sum := tlspin.Fingerprint(cert.Certificate[0])
	colons := strings.ToUpper(sum[:2])
	for i := 2; i < len(sum); i += 2 {
		colons += ":" + strings.ToUpper(sum[i:i+2])
	}
	for _, fp := range []string{sum, strings.ToUpper(sum), colons} {
		if proto, err := get(fp); err != nil || proto != "HTTP/2.0" {
			t.Errorf("the right fingerprint %s: %q, %v; want HTTP/2.0", fp, proto, err)
		}
	}
	var mismatch *tlspin.MismatchError
	if _, err := get(tlspin.Fingerprint(other.Certificate[0])); !errors.As(err, &mismatch) || mismatch.Got != sum {
		t.Errorf("a wrong fingerprint: %v; want a MismatchError naming the server's", err)
	}
}

func TestParseFingerprint(t *testing.T) {
	t.Parallel()
	good := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in, want, says string
	}{
		{in: good, want: good},
		{in: " " + strings.ToUpper(good) + "\n", want: good},
		{in: "", says: "empty"},
		{in: "abc", says: `"abc" has 3 characters; want 64 hex digits`},
		{in: strings.Repeat("g", 64), says: "not hex digits"},
		{in: good + "00", says: "66 characters"},
		{in: "AB:" + good[2:], says: "characters"}, // one colon is not openssl's form
	} {
		got, err := tlspin.ParseFingerprint(tc.in)
		switch {
		case tc.says == "" && (err != nil || got != tc.want):
			t.Errorf("ParseFingerprint(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		case tc.says != "" && (!errors.Is(err, tlspin.ErrNotFingerprint) || !strings.Contains(err.Error(), tc.says)):
			t.Errorf("ParseFingerprint(%q): %v; want ErrNotFingerprint saying %q", tc.in, err, tc.says)
		}
	}
	if _, err := tlspin.NewClient("abc", tlspin.Pings{}); !errors.Is(err, tlspin.ErrNotFingerprint) {
		t.Errorf("NewClient(abc): %v; want ErrNotFingerprint", err)
	}
}

// TestPublicKeyPin: the pin is what openssl's recipe for curl's
// --pinnedpubkey makes of the same certificate.
func TestPublicKeyPin(t *testing.T) {
	t.Parallel()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is not installed: apt-get install -y openssl")
	}
	cert, err := tlscert.SelfSigned([]string{"10.0.0.2"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	// openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64
	pipe := func(in []byte, args ...string) []byte {
		cmd := exec.CommandContext(t.Context(), openssl, args...)
		cmd.Stdin = bytes.NewReader(in)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("openssl %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	pub := pipe(certPEM, "x509", "-pubkey", "-noout")
	der := pipe(pub, "pkey", "-pubin", "-outform", "der")
	sum := pipe(der, "dgst", "-sha256", "-binary")
	want := strings.TrimSpace(string(pipe(sum, "base64")))
	if got := tlspin.PublicKeyPin(cert.Leaf); got != want {
		t.Errorf("PublicKeyPin = %s; openssl says %s", got, want)
	}
	if got, want := tlspin.Fingerprint(cert.Certificate[0]), strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(
		strings.TrimSpace(string(pipe(certPEM, "x509", "-noout", "-fingerprint", "-sha256"))), "sha256 Fingerprint="), ":", "")); got != want {
		t.Errorf("Fingerprint = %s; openssl says %s", got, want)
	}
}
