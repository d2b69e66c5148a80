//go:build linux

package sdnotify_test

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmre/vmre/internal/sdnotify"
)

// TestSend: each notification is one datagram on the socket of
// NOTIFY_SOCKET, a path or an abstract name; the watchdog is the
// manager's when WATCHDOG_PID is this process or unset.
func TestSend(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		name := filepath.Join(t.TempDir(), "notify")
		env := name
		if abstract {
			name = "\x00vmre-sdnotify-test-" + filepath.Base(t.TempDir())
			env = "@" + name[1:]
		}
		conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		n := sdnotify.New(func(k string) string {
			return map[string]string{"NOTIFY_SOCKET": env, "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "42"}[k]
		}, 42)
		if !n.Enabled() || n.Watchdog() != 3*time.Second {
			t.Errorf("Enabled %v, Watchdog %s; want a manager and 3s", n.Enabled(), n.Watchdog())
		}
		for _, send := range []func() error{func() error { return n.Ready("2 VMs: 2 running") }, n.Reloading, n.Alive} {
			if err := send(); err != nil {
				t.Fatal(err)
			}
		}
		buf := make([]byte, 512)
		var got []string
		for range 3 {
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			k, err := conn.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(buf[:k]))
		}
		conn.Close()
		if got[0] != "READY=1\nSTATUS=2 VMs: 2 running" || !strings.HasPrefix(got[1], "RELOADING=1\nMONOTONIC_USEC=") || got[2] != "WATCHDOG=1" {
			t.Errorf("abstract %v: datagrams %q", abstract, got)
		}
	}
	other := sdnotify.New(func(k string) string {
		return map[string]string{"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "7"}[k]
	}, 42)
	if other.Watchdog() != 0 {
		t.Error("the watchdog of another process was taken")
	}
	if none := sdnotify.New(func(string) string { return "" }, 42); none.Enabled() || none.Send("READY=1") != nil {
		t.Error("without NOTIFY_SOCKET a Notifier must send nothing, and not fail")
	}
}
