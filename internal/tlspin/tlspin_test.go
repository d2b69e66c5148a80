package tlspin_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/tlspin"
)

func TestPinnedTLS(t *testing.T) {
	cert, err := tlspin.SelfSigned([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := tlspin.SelfSigned([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }),
		TLSConfig: tlspin.ServerConfig(cert),
		ErrorLog:  log.New(io.Discard, "", 0), // the refused handshake
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { srv.Shutdown(context.Background()); <-done })

	get := func(fp string) error {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: tlspin.ClientConfig(fp)}}
		defer c.CloseIdleConnections()
		res, err := c.Get("https://" + ln.Addr().String())
		if err == nil {
			res.Body.Close()
		}
		return err
	}
	if err := get(tlspin.Fingerprint(cert.Certificate[0])); err != nil {
		t.Errorf("the right fingerprint: %v", err)
	}
	var mismatch *tlspin.MismatchError
	if err := get(tlspin.Fingerprint(other.Certificate[0])); !errors.As(err, &mismatch) || mismatch.Got != tlspin.Fingerprint(cert.Certificate[0]) {
		t.Errorf("a wrong fingerprint: %v; want a MismatchError naming the server's", err)
	}
}

func TestLoadOrCreate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "engine.crt"), filepath.Join(dir, "engine.key")
	first, err := tlspin.LoadOrCreate(certFile, keyFile, []string{"10.0.0.1", "node.example"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := tlspin.LoadOrCreate(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tlspin.Fingerprint(first.Certificate[0]) != tlspin.Fingerprint(again.Certificate[0]) {
		t.Error("a second start made a new certificate instead of loading the first")
	}
	if !first.Leaf.IPAddresses[0].Equal(net.ParseIP("10.0.0.1")) || first.Leaf.DNSNames[0] != "node.example" {
		t.Errorf("hosts %v %v", first.Leaf.IPAddresses, first.Leaf.DNSNames)
	}
}
