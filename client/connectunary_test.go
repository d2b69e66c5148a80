package client_test

import (
	"errors"
	"io"
	"net/http"
	"testing"

	"connectrpc.com/connect"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/vmretest"
)

// An answer that is no Connect error, from a server that is no engine or
// a proxy in front of one, is read as connect-go reads it: a code from its
// HTTP status.
func TestInitializeAnswerNotConnect(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status int
		body   string
		want   connect.Code
	}{
		{http.StatusNotFound, "404 page not found\n", connect.CodeUnimplemented},
		{http.StatusServiceUnavailable, "<html>down</html>", connect.CodeUnavailable},
		{http.StatusBadRequest, `{"code":"no such code"}`, connect.CodeInternal},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			t.Parallel()
			addr := vmretest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				if tc.body[0] == '{' {
					w.Header().Set("Content-Type", "application/json")
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			_, err := client.Initialize(t.Context(), vmAddr, client.WithEngine(addr, "token"))
			if !errors.Is(err, vmre.ErrHandshakeFailed) || connect.CodeOf(err) != tc.want {
				t.Errorf("%v (code %v); want ErrHandshakeFailed with code %v", err, connect.CodeOf(err), tc.want)
			}
		})
	}
}

// A well-formed answer of the engine that is no InitializeResponse fails.
func TestInitializeAnswerNotProto(t *testing.T) {
	t.Parallel()
	addr := vmretest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/proto")
		w.Write([]byte{0x0a, 0x7f}) // field 1, a string of 127 bytes that are not there
	}))
	_, err := client.Initialize(t.Context(), vmAddr, client.WithEngine(addr, "token"))
	if !errors.Is(err, vmre.ErrHandshakeFailed) || connect.CodeOf(err) != connect.CodeInternal {
		t.Errorf("%v; want ErrHandshakeFailed with code internal", err)
	}
}

// Initialize written by hand reads every answer as the connect-go client
// does: the same code and the same message. An answer of 200 that is no
// Connect answer (an HTTP server that is no engine) fails the handshake.
func TestInitializeAnswerAsConnectGo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		status      int
		contentType string
		body        string
		want        connect.Code
	}{
		{"200 without content type", http.StatusOK, "", "", connect.CodeUnknown},
		{"200 html", http.StatusOK, "text/html", "<html>hi</html>", connect.CodeUnknown},
		{"200 json", http.StatusOK, "application/json", "{}", connect.CodeInternal},
		{"404 text", http.StatusNotFound, "text/plain", "404 page not found\n", connect.CodeUnimplemented},
		{"400 json unknown code", http.StatusBadRequest, "application/json", `{"code":"no such code","message":"what the server said"}`, connect.CodeInternal},
		{"409 json charset", http.StatusConflict, "application/json; charset=utf-8", `{"code":"already_exists","message":"twice"}`, connect.CodeAlreadyExists},
		{"400 json-like type", http.StatusBadRequest, "application/jsonp", `{"code":"not_found","message":"no"}`, connect.CodeInternal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := vmretest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header()["Content-Type"] = []string{tc.contentType}
				if tc.contentType == "" {
					w.Header()["Content-Type"] = nil // not sniffed
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			_, byHand := client.Initialize(t.Context(), vmAddr, client.WithEngine(addr, "token"))
			_, byConnect := client.Initialize(t.Context(), vmAddr, client.WithEngine(addr, "token"), client.WithHTTPClient(http.DefaultClient))
			if connect.CodeOf(byConnect) != tc.want {
				t.Fatalf("connect-go: %v (code %v); want code %v", byConnect, connect.CodeOf(byConnect), tc.want)
			}
			var hand, cgo *connect.Error
			if !errors.Is(byHand, vmre.ErrHandshakeFailed) || !errors.As(byHand, &hand) || !errors.As(byConnect, &cgo) ||
				hand.Code() != cgo.Code() || hand.Message() != cgo.Message() {
				t.Errorf("by hand: %v\nconnect-go: %v", byHand, byConnect)
			}
		})
	}
}
