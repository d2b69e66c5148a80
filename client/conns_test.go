package client_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/server"
)

// An idle HTTP/2 connection to the VM, such as the host keeps, does not
// hold up its graceful shutdown: net/http's HTTP/2 client does not close
// an idle connection on the server's GOAWAY, and the server would wait a
// second for it, past a shutdown timeout shorter than that.
func TestServeShutdownIdleHTTP2(t *testing.T) {
	t.Parallel()
	e, engineAddr := vmretest.StartEngine(t, server.Config{}, nil)
	l := vmretest.NewLaunch(t, e, 1, nil)
	logs := vmretest.NewRecorder()
	ctx, cancel := context.WithCancel(t.Context())
	v := serveVM(t, ctx, client.WithEngine(engineAddr, l.Token()),
		client.WithLogger(slog.New(logs)), client.WithShutdownTimeout(300*time.Millisecond))
	vmretest.WaitClosed(t, v.handshake, "the handshake")
	hc := vmretest.H2CClient(t)
	res, err := hc.Get("http://" + v.addr + helloPath)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.ProtoMajor != 2 {
		t.Fatalf("the call went over %s; want HTTP/2", res.Proto)
	}
	cancel()
	if err := serveResult(t, v.done); err != nil {
		t.Errorf("Serve = %v; want nil", err)
	}
	if r, cut := logs.Find("graceful shutdown cut short"); cut {
		t.Errorf("the shutdown waited for the idle connection: %v", r.Attrs)
	}
	if _, err := hc.Get("http://" + v.addr + helloPath); err == nil {
		t.Error("the VM still answers after Serve returned")
	}
}
