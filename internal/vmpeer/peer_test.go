package vmpeer_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"go.uber.org/goleak"

	"github.com/vmre/vmre/internal/vmpeer"
	"github.com/vmre/vmre/internal/vmretest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server is a real HTTP server on 127.0.0.1 serving grpc.health.v1, which
// counts the requests that reach its handler by Content-Type.
type server struct {
	addr string
	mu   sync.Mutex
	seen map[string]int
}

func (s *server) count(contentType string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[contentType]
}

// serve starts a health server speaking HTTP/1.1, plus h2c when h2 is set;
// with refuseJSON it answers Connect JSON with 415, as a server without a
// JSON codec does.
func serve(t *testing.T, h2, refuseJSON bool) *server {
	t.Helper()
	s := &server{seen: map[string]int{}}
	path, health := grpchealth.NewHandler(grpchealth.NewStaticChecker())
	mux := http.NewServeMux()
	mux.Handle(path, health)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ct := r.Header.Get("Content-Type")
		s.mu.Lock()
		s.seen[ct]++
		s.mu.Unlock()
		if refuseJSON && ct == "application/json" {
			w.WriteHeader(http.StatusUnsupportedMediaType)
			return
		}
		mux.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	vmretest.ServeOn(t, ln, handler, !h2)
	s.addr = ln.Addr().String()
	return s
}

func check(ctx context.Context, p *vmpeer.Peer) (grpchealth.Status, error) {
	var status grpchealth.Status
	err := p.Call(ctx, func(c connect.HTTPClient, opts ...connect.ClientOption) error {
		res, err := grpchealth.NewClient(c, p.URL(), opts...).Check(ctx, &grpchealth.CheckRequest{})
		if err == nil {
			status = res.Status
		}
		return err
	})
	return status, err
}

// A Peer speaks gRPC to an h2c server, Connect JSON to an HTTP/1.1 server,
// and Connect proto to one that refuses JSON; it decides once and every
// later call goes straight to the protocol found.
func TestPeerDecidesByTrying(t *testing.T) {
	for _, tc := range []struct {
		name           string
		h2, refuseJSON bool
		want           vmpeer.Protocol
		contentType    string
		wantString     string
	}{
		{"h2c", true, false, vmpeer.GRPC, "application/grpc", "gRPC over h2c"},
		{"http1", false, false, vmpeer.ConnectJSON, "application/json", "Connect (JSON) over HTTP/1.1"},
		{"http1 without JSON", false, true, vmpeer.ConnectProto, "application/proto", "Connect (proto) over HTTP/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := serve(t, tc.h2, tc.refuseJSON)
			p := vmpeer.New(s.addr)
			defer p.Close()
			if p.Protocol() != vmpeer.Unknown {
				t.Fatalf("protocol before any call: %v", p.Protocol())
			}
			for i := range 3 {
				status, err := check(t.Context(), p)
				if err != nil || status != grpchealth.StatusServing {
					t.Fatalf("call %d: %v, %v", i, status, err)
				}
			}
			if got := p.Protocol(); got != tc.want || got.String() != tc.wantString {
				t.Errorf("protocol %v (%q), want %v (%q)", got, got.String(), tc.want, tc.wantString)
			}
			if n := s.count(tc.contentType); n != 3 {
				t.Errorf("%d requests of %s, want 3 (one per call)", n, tc.contentType)
			}
			if tc.refuseJSON && s.count("application/json") != 1 {
				t.Errorf("%d JSON requests, want the 1 that decided", s.count("application/json"))
			}
			if !tc.refuseJSON && tc.h2 && s.count("application/json") != 0 {
				t.Errorf("an h2c server got %d JSON requests, want 0", s.count("application/json"))
			}
		})
	}
}

// Concurrent first calls decide once: no call goes to a protocol the
// server does not speak after the first one found out.
func TestPeerConcurrentFirstCalls(t *testing.T) {
	t.Parallel()
	s := serve(t, false, true)
	p := vmpeer.New(s.addr)
	defer p.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := check(t.Context(), p)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if p.Protocol() != vmpeer.ConnectProto {
		t.Errorf("protocol %v, want %v", p.Protocol(), vmpeer.ConnectProto)
	}
	if n := s.count("application/json"); n != 1 {
		t.Errorf("%d JSON requests, want 1: only the first call tries", n)
	}
}

// A server the Peer cannot reach decides nothing: the error names each
// protocol's failure, and the protocol stays Unknown.
func TestPeerNoAnswer(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := vmpeer.New(addr)
	defer p.Close()
	_, err = check(t.Context(), p)
	var noProto *vmpeer.NoProtocolError
	if !errors.As(err, &noProto) || len(noProto.Errs) != 3 {
		t.Fatalf("error %v, want a NoProtocolError with 3 failures", err)
	}
	for _, want := range []string{"gRPC over h2c", "Connect (JSON) over HTTP/1.1", "Connect (proto) over HTTP/1.1", "connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if p.Protocol() != vmpeer.Unknown {
		t.Errorf("protocol %v after no answer, want Unknown", p.Protocol())
	}
}

// A server written by hand answers grpc.health.v1 in Connect JSON with the
// enum names of gRPC's health.proto ("SERVING"); connect-go's grpchealth
// client knows them as SERVING_STATUS_SERVING, and still reads them.
func TestPeerReadsEitherEnumSpelling(t *testing.T) {
	t.Parallel()
	for _, body := range []string{`{"status":"SERVING"}`, `{"status": "SERVING_STATUS_SERVING"}`, `{"status":1}`} {
		mux := http.NewServeMux()
		mux.HandleFunc("POST /grpc.health.v1.Health/Check", func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Content-Type") != "application/json" {
				w.WriteHeader(http.StatusUnsupportedMediaType)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, body)
		})
		srv := &http.Server{Handler: mux}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ln) }()
		p := vmpeer.New(ln.Addr().String())
		status, err := check(t.Context(), p)
		if err != nil || status != grpchealth.StatusServing || p.Protocol() != vmpeer.ConnectJSON {
			t.Errorf("%s: status %v, protocol %v, error %v; want serving over Connect JSON", body, status, p.Protocol(), err)
		}
		p.Close()
		srv.Close()
		<-done
	}
}
