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
