package server

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	runtimev1 "github.com/vmre/vmre/gen/vmre/runtime/v1"
	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
)

// fuzzContentTypes are the content types FuzzInitialize sends: the Connect
// protocol's unary codecs, gRPC-Web (which works over HTTP/1.1), and types
// the engine must refuse.
var fuzzContentTypes = []string{
	"application/json",
	"application/proto",
	"application/json; charset=utf-8",
	"application/grpc-web+proto",
	"application/grpc-web+json",
	"text/plain",
	"",
}

// tokenPlaceholder in a fuzzed Authorization header stands for the
// launch's real token, so that the fuzzer can vary what surrounds it.
const tokenPlaceholder = "TOKEN"

// FuzzInitialize sends arbitrary Initialize requests through the engine's
// handler. It must never panic, must answer with a Connect success or a
// Connect error (or the HTTP status Connect gives a content type it does
// not speak), and must never complete a launch unless the request carried
// the launch's token, a valid address and the accepted version.
func FuzzInitialize(f *testing.F) {
	f.Add([]byte(`{"protocolVersion":1,"addr":"127.0.0.1:40000"}`), uint8(0), "Bearer TOKEN")
	f.Add([]byte(`{"protocolVersion":1,"addr":"127.0.0.1:40000"}`), uint8(2), "bearer   TOKEN  ")
	f.Add([]byte(`{"protocolVersion":1,"addr":"127.0.0.1:40000"}`), uint8(0), "Bearer TOKEN0")
	f.Add([]byte(`{"protocolVersion":2,"addr":"127.0.0.1:40000"}`), uint8(0), "Bearer TOKEN")
	f.Add([]byte(`{"protocolVersion":1,"addr":"10.0.0.1:40000"}`), uint8(0), "Bearer TOKEN")
	f.Add([]byte(`{"protocol_version":"1","addr":"[::1]:1","extra":true}`), uint8(0), "Bearer TOKEN")
	f.Add([]byte(`{"addr":`), uint8(0), "Bearer TOKEN")
	f.Add(mustMarshal(&runtimev1.InitializeRequest{ProtocolVersion: 1, Addr: "127.0.0.1:40000"}), uint8(1), "Bearer TOKEN")
	f.Add(mustMarshal(&runtimev1.InitializeRequest{ProtocolVersion: 1, Addr: "localhost:1"}), uint8(1), "Basic TOKEN")
	f.Add(grpcWebFrame(mustMarshal(&runtimev1.InitializeRequest{ProtocolVersion: 1, Addr: "127.0.0.1:9"})), uint8(3), "Bearer TOKEN")
	f.Add([]byte{0xff, 0xff, 0xff}, uint8(1), "Bearer TOKEN")
	f.Add([]byte(`{}`), uint8(5), "")

	e := New(Config{})
	h := e.Handler()
	f.Fuzz(func(t *testing.T, body []byte, kind uint8, authorization string) {
		l, err := e.NewLaunch(LaunchConfig{Initializer: AcceptVersions("", 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer l.End()
		contentType := fuzzContentTypes[int(kind)%len(fuzzContentTypes)]
		authorization = strings.ReplaceAll(authorization, tokenPlaceholder, l.Token())

		req := httptest.NewRequest(http.MethodPost, runtimev1connect.RuntimeServiceInitializeProcedure, bytes.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		// A header value with a control character cannot be sent on the
		// wire; net/http would refuse it before the engine saw it.
		if authorization != "" && validHeaderValue(authorization) {
			req.Header.Set("Authorization", authorization)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		res := w.Result()
		resBody := w.Body.Bytes()

		select {
		case <-l.Initialized():
		default:
			checkRefusal(t, contentType, res, resBody)
			return
		}
		// The launch completed: the request must have earned it.
		if got := bearerToken(req.Header.Get("Authorization")); got != l.Token() {
			t.Fatalf("a request with Authorization %q completed the launch", req.Header.Get("Authorization"))
		}
		msg, ok := decodeRequest(contentType, body)
		if !ok {
			t.Fatalf("a body the codec of %q cannot decode completed the launch: %q", contentType, body)
		}
		if checkAddr(msg.GetAddr(), false) != nil || msg.GetProtocolVersion() != 1 {
			t.Fatalf("a request for %q, version %d completed the launch", msg.GetAddr(), msg.GetProtocolVersion())
		}
		if addr, v := l.Result(); addr != msg.GetAddr() || v != 1 {
			t.Fatalf("Result() = %q, %d; want %q, 1", addr, v, msg.GetAddr())
		}
		if res.StatusCode != http.StatusOK {
			t.Fatalf("status %d for a request that completed the launch", res.StatusCode)
		}
	})
}

// checkRefusal checks that a request that did not complete its launch got
// a well-formed refusal.
func checkRefusal(t *testing.T, contentType string, res *http.Response, body []byte) {
	t.Helper()
	switch {
	case strings.HasPrefix(contentType, "application/grpc-web"):
		// gRPC-Web answers 200 and puts the status in a trailer frame.
		if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusUnsupportedMediaType {
			t.Fatalf("gRPC-Web: status %d", res.StatusCode)
		}
		if res.StatusCode == http.StatusOK && !bytes.Contains(body, []byte("grpc-status:")) && res.Header.Get("Grpc-Status") == "" {
			t.Fatalf("gRPC-Web: no grpc-status in %q", body)
		}
	case contentType == "application/json", contentType == "application/proto", contentType == "application/json; charset=utf-8":
		if res.StatusCode == http.StatusOK {
			t.Fatalf("status 200 with %q, but the launch is not complete", body)
		}
		var e struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(body, &e); err != nil || !knownCode(e.Code) {
			t.Fatalf("status %d with body %q: not a Connect error", res.StatusCode, body)
		}
	default:
		if res.StatusCode != http.StatusUnsupportedMediaType {
			t.Fatalf("content type %q: status %d; want 415", contentType, res.StatusCode)
		}
	}
}

func knownCode(code string) bool {
	switch code {
	case "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found",
		"already_exists", "permission_denied", "resource_exhausted", "failed_precondition",
		"aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss",
		"unauthenticated":
		return true
	}
	return false
}

// decodeRequest decodes body as Connect's codec for contentType does.
func decodeRequest(contentType string, body []byte) (*runtimev1.InitializeRequest, bool) {
	msg := new(runtimev1.InitializeRequest)
	switch {
	case strings.HasPrefix(contentType, "application/json"):
		return msg, len(body) > 0 && protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(body, msg) == nil
	case contentType == "application/proto":
		return msg, proto.Unmarshal(body, msg) == nil
	case strings.HasPrefix(contentType, "application/grpc-web"):
		if len(body) < 5 || body[0] != 0 || int(binary.BigEndian.Uint32(body[1:5])) != len(body)-5 {
			return msg, false
		}
		if strings.HasSuffix(contentType, "+json") {
			return decodeRequest("application/json", body[5:])
		}
		return decodeRequest("application/proto", body[5:])
	}
	return msg, false
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// grpcWebFrame wraps a message in a gRPC(-Web) data frame.
func grpcWebFrame(msg []byte) []byte {
	frame := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(msg)))
	return append(frame, msg...)
}

// FuzzCheckAddr checks that checkAddr accepts only a host:port with a port
// from 1 to 65535, a host, and, unless remote VMs are allowed, a loopback
// host; and that allowing remote VMs only ever accepts more.
func FuzzCheckAddr(f *testing.F) {
	for _, seed := range []string{
		"127.0.0.1:40000", "[::1]:1", "localhost:65535", "127.1.2.3:80", "[::ffff:127.0.0.1]:80",
		"[fe80::1%lo]:80", "[::1%25eth0]:9", "10.0.0.1:80", "0.0.0.0:1", "vm.example.com:9650",
		"127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:http", ":80", "[::1]", "127.0.0.1:+1",
		"127.0.0.1:0080", "LOCALHOST:1", "localhost.:1", "[127.0.0.1]:1", "", strings.Repeat("1", 600) + ":1",
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	f.Fuzz(func(t *testing.T, addr string, remote bool) {
		err := checkAddr(addr, remote)
		if !remote && err == nil && checkAddr(addr, true) != nil {
			t.Fatalf("%q is accepted as a loopback address but not as a remote one", addr)
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("empty error for %q", addr)
			}
			return
		}
		if len(addr) > maxAddrLen {
			t.Fatalf("accepted %d bytes of address", len(addr))
		}
		host, port, splitErr := net.SplitHostPort(addr)
		if splitErr != nil || host == "" {
			t.Fatalf("accepted %q, which is not a host:port", addr)
		}
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			t.Fatalf("accepted %q, whose port is not 1 to 65535", addr)
		}
		if remote {
			return
		}
		if ip, err := netip.ParseAddr(host); host != "localhost" && (err != nil || !ip.IsLoopback()) {
			t.Fatalf("accepted %q as a loopback address", addr)
		}
	})
}

// FuzzBearerToken checks the Authorization header parser and the token
// lookup: a launch is found only by its exact token, sent as a Bearer
// credential, whatever surrounds it.
func FuzzBearerToken(f *testing.F) {
	for _, seed := range []string{
		"Bearer TOKEN", "bearer TOKEN", "BEARER   TOKEN \t", "Bearer", "Bearer ", "Bearer  ", "Basic TOKEN",
		"TOKEN", "Bearer TOKEN0", "Bearer TOKE", "Bearer TOKEN TOKEN", "Bearer\tTOKEN", "", "Bearer \u00a0TOKEN",
		"Bearer " + strings.Repeat("0", 64),
	} {
		f.Add(seed)
	}
	e := New(Config{})
	l, err := e.NewLaunch(LaunchConfig{Initializer: AcceptVersions("", 1)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, header string) {
		header = strings.ReplaceAll(header, tokenPlaceholder, l.Token())
		token := bearerToken(header)
		if token != "" {
			if len(header) < 7 || !strings.EqualFold(header[:7], "Bearer ") {
				t.Fatalf("bearerToken(%q) = %q, but the header is not a Bearer credential", header, token)
			}
			if token != strings.TrimSpace(header[7:]) {
				t.Fatalf("bearerToken(%q) = %q; want the trimmed credential", header, token)
			}
		}
		if got := bearerToken("Bearer " + token); got != token {
			t.Fatalf("bearerToken does not round-trip %q: %q", token, got)
		}
		found := e.lookup(token)
		if (found != nil) != (token == l.Token()) {
			t.Fatalf("lookup(%q) = %v; the launch's token is %q", token, found, l.Token())
		}
		if found != nil && found != l {
			t.Fatal("lookup found another launch")
		}
	})
}
