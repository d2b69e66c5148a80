package server_test

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	runtimepb "github.com/vmre/vmre/gen/vm/runtime"
	"github.com/vmre/vmre/gen/vm/runtime/runtimepbconnect"
	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
	"github.com/vmre/vmre/internal/h2c"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/server"
)

// TestTokenFlood floods the engine with wrong and guessed tokens while a
// real launch is pending: every one is unauthenticated and changes
// nothing, and the real call, made in the middle of the flood, completes.
// Then the token is spent: a second call is already_exists, and once the
// launch ends, not_found.
func TestTokenFlood(t *testing.T) {
	t.Parallel()
	const requests, workers = 2000, 8
	e, addr := vmretest.StartEngine(t, server.Config{}, nil)
	l := vmretest.NewLaunch(t, e, 1, nil)
	bystander := vmretest.NewLaunch(t, e, 1, nil) // another pending launch, which the flood must not touch

	clients := []runtimev1connect.RuntimeServiceClient{
		runtimeClient(t, addr),
		runtimev1connect.NewRuntimeServiceClient(vmretest.HTTP1Client(t), "http://"+addr),
		runtimeClient(t, addr, connect.WithGRPC()),
		runtimeClient(t, addr, connect.WithGRPCWeb()),
	}
	guesses := wrongTokens(t, l.Token(), requests)

	var sent atomic.Int64
	halfway := make(chan struct{})
	var once sync.Once
	codes := make(chan connect.Code, requests)
	jobs := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				c := clients[i%len(clients)]
				_, err := callInitialize(t.Context(), c, guesses[i], 1, "127.0.0.1:1")
				codes <- connect.CodeOf(err)
				if err == nil {
					t.Errorf("guess %q was accepted", guesses[i])
				}
				if sent.Add(1) == requests/2 {
					once.Do(func() { close(halfway) })
				}
			}
		})
	}
	real := make(chan error, 1)
	go func() {
		<-halfway
		_, err := callInitialize(t.Context(), clients[0], l.Token(), 1, vmAddr)
		real <- err
	}()
	for i := range requests {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	close(codes)
	if err := <-real; err != nil {
		t.Fatalf("the real call in the middle of the flood: %v", err)
	}

	tally := map[connect.Code]int{}
	for c := range codes {
		tally[c]++
	}
	t.Logf("%d wrong tokens in %s (%.0f requests/s): %v", requests, elapsed.Round(time.Millisecond), requests/elapsed.Seconds(), tally)
	if tally[connect.CodeUnauthenticated] != requests {
		t.Errorf("answers to wrong tokens: %v; want all %d unauthenticated", tally, requests)
	}
	if got, v := l.Result(); got != vmAddr || v != 1 {
		t.Errorf("Result() = %q, %d; want the real call's %q, 1", got, v, vmAddr)
	}
	if isClosed(bystander.Initialized()) {
		t.Fatal("the flood completed a launch it had no token for")
	}
	if _, err := callInitialize(t.Context(), clients[1], bystander.Token(), 1, otherVMAddr()); err != nil {
		t.Fatalf("the bystander launch after the flood: %v", err)
	}

	// The token is single-use.
	_, err := callInitialize(t.Context(), clients[0], l.Token(), 1, vmAddr)
	wantCode(t, err, connect.CodeAlreadyExists)
	l.End()
	for _, c := range clients {
		_, err = callInitialize(t.Context(), c, l.Token(), 1, vmAddr)
		wantCode(t, err, connect.CodeNotFound)
	}
}

// wrongTokens returns n tokens that are not token: random guesses, the
// token with one digit changed, cut short, lengthened, in upper case, sent
// under another scheme, and no token at all.
func wrongTokens(t *testing.T, token string, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		switch i % 6 {
		case 0:
			b := make([]byte, 32)
			rand.Read(b)
			out[i] = hex.EncodeToString(b)
		case 1:
			b := []byte(token)
			j := i / 6 % len(b)
			b[j] = "0123456789abcdef"[(strings.IndexByte("0123456789abcdef", b[j])+1)%16]
			out[i] = string(b)
		case 2:
			out[i] = token[:i/6%len(token)]
		case 3:
			out[i] = token + "0"
		case 4:
			out[i] = strings.ToUpper(token)
		case 5:
			out[i] = "" // no Authorization header
		}
		if out[i] == token {
			t.Fatalf("wrongTokens made the real token")
		}
	}
	return out
}

// TestEndedTokensAreRemembered ends more launches than the engine
// remembers: the newest ended tokens get not_found, the oldest, forgotten,
// get unauthenticated like any unknown token. Either way they never work
// again.
func TestEndedTokensAreRemembered(t *testing.T) {
	t.Parallel()
	const remembered = 4096 // the engine's tombstones
	e, addr := vmretest.StartEngine(t, server.Config{}, nil)
	c := runtimeClient(t, addr)
	var tokens []string
	for range remembered + 1 {
		l, err := e.NewLaunch(server.LaunchConfig{Initializer: server.AcceptVersions("", 1)})
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, l.Token())
		l.End()
	}
	_, err := callInitialize(t.Context(), c, tokens[0], 1, vmAddr)
	wantCode(t, err, connect.CodeUnauthenticated)
	_, err = callInitialize(t.Context(), c, tokens[1], 1, vmAddr)
	wantCode(t, err, connect.CodeNotFound)
	_, err = callInitialize(t.Context(), c, tokens[remembered], 1, vmAddr)
	wantCode(t, err, connect.CodeNotFound)
}

// TestLegacyFlood floods a legacy listener, which has no token, with calls
// it must refuse; the real call still wins, and the listener then closes:
// a new connection is refused.
func TestLegacyFlood(t *testing.T) {
	t.Parallel()
	const requests, workers = 400, 4
	ll, err := server.ListenLegacy(server.LegacyConfig{Initializer: server.AcceptVersions("", 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ll.End)
	c := runtimepbconnect.NewRuntimeClient(vmretest.H2CClient(t), "http://"+ll.Addr(), connect.WithGRPC())
	call := func(version uint32, addr string) error {
		_, err := c.Initialize(t.Context(), connect.NewRequest(&runtimepb.InitializeRequest{ProtocolVersion: version, Addr: addr}))
		return err
	}

	bad := []struct {
		version uint32
		addr    string
		want    connect.Code
	}{
		{1, "10.0.0.1:80", connect.CodeInvalidArgument},
		{1, "127.0.0.1:0", connect.CodeInvalidArgument},
		{1, "", connect.CodeInvalidArgument},
		{2, vmAddr, connect.CodeFailedPrecondition},
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				b := bad[i%len(bad)]
				if err := call(b.version, b.addr); connect.CodeOf(err) != b.want {
					t.Errorf("legacy call %d, %q: %v; want %v", b.version, b.addr, err, b.want)
				}
			}
		})
	}
	for i := range requests {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if isClosed(ll.Initialized()) {
		t.Fatal("a refused call completed the legacy handshake")
	}

	if err := call(1, vmAddr); err != nil {
		t.Fatalf("the real legacy call after the flood: %v", err)
	}
	vmretest.WaitClosed(t, ll.Initialized(), "the legacy handshake")
	// The connection that won still answers, and refuses a second call.
	wantCode(t, call(1, "127.0.0.1:40001"), connect.CodeAlreadyExists)
	if got, _ := ll.Result(); got != vmAddr {
		t.Errorf("Result() = %q; want %q", got, vmAddr)
	}
	// The listener is closed: a new connection is refused, or reaches
	// another test's server that took the freed port, never this listener.
	wantLegacyClosed(t, ll.Addr())
}

// TestMalformedRequests sends the engine requests no Connect client would
// make, each with the launch's real token: every one gets the documented
// refusal, and the launch is untouched.
func TestMalformedRequests(t *testing.T) {
	t.Parallel()
	e, addr := vmretest.StartEngine(t, server.Config{}, nil)
	url := "http://" + addr + runtimev1connect.RuntimeServiceInitializeProcedure
	validJSON := `{"protocolVersion":1,"addr":"` + vmAddr + `"}`

	var bomb bytes.Buffer // 8 MiB of JSON whitespace, about 8 KiB gzipped
	zw := gzip.NewWriter(&bomb)
	zw.Write([]byte(`{"protocolVersion":1,"addr":"` + vmAddr + `"`))
	zw.Write(bytes.Repeat([]byte(" "), 8<<20))
	zw.Write([]byte(`}`))
	zw.Close()

	cases := []struct {
		name        string
		method      string
		contentType string
		encoding    string
		body        []byte
		wantStatus  int
		wantCode    string // Connect error code; empty when the answer has no Connect body
	}{
		{"malformed JSON", "POST", "application/json", "", []byte(`{"addr":`), 400, "invalid_argument"},
		{"JSON of the wrong types", "POST", "application/json", "", []byte(`{"protocolVersion":"one","addr":42}`), 400, "invalid_argument"},
		{"empty JSON body", "POST", "application/json", "", nil, 400, "invalid_argument"},
		{"JSON array", "POST", "application/json", "", []byte(`[1,2]`), 400, "invalid_argument"},
		{"malformed protobuf", "POST", "application/proto", "", []byte{0xff, 0xff, 0xff, 0xff}, 400, "invalid_argument"},
		{"JSON sent as protobuf", "POST", "application/proto", "", []byte(validJSON), 400, "invalid_argument"},
		{"wrong content type", "POST", "text/plain", "", []byte(validJSON), 415, ""},
		{"no content type", "POST", "", "", []byte(validJSON), 415, ""},
		{"form content type", "POST", "application/x-www-form-urlencoded", "", []byte("addr=127.0.0.1:1"), 415, ""},
		{"GET", "GET", "application/json", "", nil, 405, ""},
		{"unknown content encoding", "POST", "application/json", "br", []byte(validJSON), 501, "unimplemented"},
		{"gzip bomb", "POST", "application/json", "gzip", bomb.Bytes(), 429, "resource_exhausted"},
		{"gzip that is not gzip", "POST", "application/json", "gzip", []byte(validJSON), 400, "invalid_argument"},
	}
	for _, hc := range []struct {
		name string
		c    *http.Client
	}{{"http1.1", vmretest.HTTP1Client(t)}, {"h2c", vmretest.H2CClient(t)}} {
		for _, tc := range cases {
			// Each case's launch announces an address of its own: the
			// engine refuses one that another launch, still running in a
			// parallel case, announced first.
			own := otherVMAddr()
			t.Run(hc.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				l := vmretest.NewLaunch(t, e, 1, nil)
				req, err := http.NewRequestWithContext(t.Context(), tc.method, url, bytes.NewReader(tc.body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Authorization", "Bearer "+l.Token())
				if tc.contentType != "" {
					req.Header.Set("Content-Type", tc.contentType)
				}
				if tc.encoding != "" {
					req.Header.Set("Content-Encoding", tc.encoding)
				}
				res, err := hc.c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != tc.wantStatus {
					t.Errorf("status %d (%s); want %d", res.StatusCode, body, tc.wantStatus)
				}
				if tc.wantStatus == http.StatusUnsupportedMediaType && res.Header.Get("Accept-Post") == "" {
					t.Error("a 415 without Accept-Post, which names the content types the engine takes")
				}
				if tc.wantCode != "" {
					var ce struct {
						Code    string `json:"code"`
						Message string `json:"message"`
					}
					if err := json.Unmarshal(body, &ce); err != nil || ce.Code != tc.wantCode || ce.Message == "" {
						t.Errorf("body %q; want a Connect error %q with a message", body, tc.wantCode)
					}
				}
				if isClosed(l.Initialized()) {
					t.Fatal("a malformed request completed the launch")
				}
				if _, err := callInitialize(t.Context(), runtimeClient(t, addr), l.Token(), 1, own); err != nil {
					t.Fatalf("the right call after a malformed one: %v", err)
				}
			})
		}
	}
}

// TestHeaderLimits checks the engine's HTTP server limits: a header block
// over 64 KiB is refused before any handler runs, and a connection that
// never finishes its headers is closed after the 5 s header timeout.
func TestHeaderLimits(t *testing.T) {
	t.Parallel()
	e, addr := vmretest.StartEngine(t, server.Config{}, nil)

	t.Run("oversized headers", func(t *testing.T) {
		t.Parallel()
		l := vmretest.NewLaunch(t, e, 1, nil)
		req, err := http.NewRequestWithContext(t.Context(), "POST",
			"http://"+addr+runtimev1connect.RuntimeServiceInitializeProcedure, strings.NewReader(`{"protocolVersion":1,"addr":"`+vmAddr+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+l.Token())
		req.Header.Set("X-Padding", strings.Repeat("p", h2c.MaxHeaderBytes+4096))
		res, err := vmretest.HTTP1Client(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("status %d; want 431", res.StatusCode)
		}
		if isClosed(l.Initialized()) {
			t.Error("a request with oversized headers completed the launch")
		}
	})

	t.Run("slow headers", func(t *testing.T) {
		t.Parallel()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		if _, err := io.WriteString(conn, "POST "+runtimev1connect.RuntimeServiceInitializeProcedure+" HTTP/1.1\r\nHost: x\r\n"); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(vmretest.WaitTimeout))
		_, err = io.Copy(io.Discard, conn) // until the server closes the connection
		elapsed := time.Since(start)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the server kept a connection with unfinished headers open for %s", vmretest.WaitTimeout)
		}
		// The timeout is the claim: not before it, and not long after,
		// though a loaded machine may fire the server's timer late.
		if elapsed < h2c.ReadHeaderTimeout-time.Second || elapsed > h2c.ReadHeaderTimeout+10*time.Second {
			t.Errorf("the server closed a connection with unfinished headers after %s; want about %s", elapsed, h2c.ReadHeaderTimeout)
		}
	})
}

// TestRefusalLogIsLimited: the engine and a legacy listener log refused
// calls at WARN, at most 10 in a second; the first record after a run of
// dropped ones says how many were dropped, so that the records account for
// every refusal. Their hooks are told of every call. The subject of the
// test is the log output.
func TestRefusalLogIsLimited(t *testing.T) {
	t.Parallel()
	t.Run("engine", func(t *testing.T) {
		t.Parallel()
		rec := vmretest.NewRecorder()
		var told atomic.Int64
		_, addr := vmretest.StartEngine(t, server.Config{
			Logger: slog.New(rec),
			Hooks:  &server.Hooks{Call: func(server.Call) { told.Add(1) }},
		}, nil)
		c := runtimeClient(t, addr)
		refuse := func() error {
			_, err := callInitialize(t.Context(), c, "feedface", 1, vmAddr)
			return err
		}
		checkRefusalLog(t, rec, "initialize rejected", refuse, &told)
	})
	t.Run("legacy listener", func(t *testing.T) {
		t.Parallel()
		rec := vmretest.NewRecorder()
		var told atomic.Int64
		ll, err := server.ListenLegacy(server.LegacyConfig{
			Initializer: server.AcceptVersions("", 1),
			Logger:      slog.New(rec),
			Hooks:       &server.Hooks{Call: func(server.Call) { told.Add(1) }},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ll.End)
		c := runtimepbconnect.NewRuntimeClient(vmretest.H2CClient(t), "http://"+ll.Addr(), connect.WithGRPC())
		refuse := func() error {
			_, err := c.Initialize(t.Context(), connect.NewRequest(&runtimepb.InitializeRequest{ProtocolVersion: 1, Addr: ""}))
			return err
		}
		checkRefusalLog(t, rec, "legacy initialize rejected", refuse, &told)
	})
}

// checkRefusalLog makes refused calls back to back until a record of msg
// says how many were dropped before it, which comes once the first second
// of refusals has passed, and checks the records against the calls.
func checkRefusalLog(t *testing.T, rec *vmretest.Recorder, msg string, refuse func() error, told *atomic.Int64) {
	t.Helper()
	const perSecond = 10
	refusals := func() []vmretest.Record {
		var out []vmretest.Record
		for _, r := range rec.Records() {
			if r.Message == msg {
				out = append(out, r)
			}
		}
		return out
	}
	start := time.Now()
	sent := 0
	for {
		if err := refuse(); err == nil {
			t.Fatal("a call meant to be refused was accepted")
		}
		sent++
		// A refusal is logged, if at all, before its answer is written.
		if recs := refusals(); len(recs) > 0 && recs[len(recs)-1].Attrs["dropped_before"] != nil {
			break
		}
		if time.Since(start) > vmretest.WaitTimeout {
			t.Fatalf("%d refusals in %s, and no record says how many were dropped", sent, vmretest.WaitTimeout)
		}
	}
	elapsed := time.Since(start)
	recs := refusals()
	accounted := 0
	for _, r := range recs {
		if r.Level != slog.LevelWarn || r.Attrs["peer"] == nil || r.Attrs["code"] == nil {
			t.Errorf("record %v %v; want WARN with the peer and the code", r.Level, r.Attrs)
		}
		dropped, _ := r.Attrs["dropped_before"].(int64)
		accounted += 1 + int(dropped)
	}
	t.Logf("%d refusals in %s: %d records", sent, elapsed.Round(time.Millisecond), len(recs))
	if accounted != sent {
		t.Errorf("the records account for %d refusals (each, plus those dropped before it); %d were made", accounted, sent)
	}
	if limit := perSecond * (int(elapsed/time.Second) + 1); len(recs) > limit {
		t.Errorf("%d records of refusals in %s; want at most %d a second", len(recs), elapsed, perSecond)
	}
	if n := told.Load(); n != int64(sent) {
		t.Errorf("the hook was told of %d calls; want every one of the %d", n, sent)
	}
}
