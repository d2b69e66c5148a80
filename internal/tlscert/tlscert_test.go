package tlscert_test

import (
	"net"
	"path/filepath"
	"testing"

	"github.com/vmre/vmre/internal/tlscert"
	"github.com/vmre/vmre/tlspin"
)

func TestLoadOrCreate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "engine.crt"), filepath.Join(dir, "engine.key")
	first, err := tlscert.LoadOrCreate(certFile, keyFile, []string{"10.0.0.1", "node.example"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := tlscert.LoadOrCreate(certFile, keyFile, nil)
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
