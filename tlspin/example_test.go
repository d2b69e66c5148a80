package tlspin_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/vmre/vmre/tlspin"
)

// A caller of a remote VM dials it over TLS trusting the one certificate
// whose SHA-256 the node published for it (cert_sha256 in /v1/vms).
func ExampleNewClient() {
	vm := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "the VM answers")
	}))
	defer vm.Close()
	certSHA256 := tlspin.Fingerprint(vm.Certificate().Raw) // as the node publishes it

	c, err := tlspin.NewClient(certSHA256, tlspin.Pings{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseIdleConnections()
	res, err := c.Get(vm.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer res.Body.Close()
	fmt.Println(res.Status)

	_, err = tlspin.NewClient("abc", tlspin.Pings{})
	fmt.Println(err)
	// Output:
	// 200 OK
	// not a SHA-256 fingerprint: "abc" has 3 characters; want 64 hex digits, the SHA-256 of a DER certificate
}
