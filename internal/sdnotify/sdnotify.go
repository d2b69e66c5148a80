// Package sdnotify speaks systemd's notify protocol (sd_notify(3)): a
// service of Type=notify tells the service manager, by datagrams to the
// unix socket of $NOTIFY_SOCKET, that it is ready (READY=1), reloading
// (RELOADING=1 with MONOTONIC_USEC), stopping (STOPPING=1), its status
// (STATUS=...), and that it is alive (WATCHDOG=1 within $WATCHDOG_USEC).
// The protocol is a few lines; no library is needed.
package sdnotify

import (
	"net"
	"strconv"
	"strings"
	"time"
)

// Notifier sends notifications to the service manager; the zero Notifier
// (no $NOTIFY_SOCKET) sends nothing.
type Notifier struct {
	addr     *net.UnixAddr
	watchdog time.Duration
}

// New returns the Notifier of the environment getenv reads: its
// NOTIFY_SOCKET (a path, or an abstract socket after "@"), and its
// WATCHDOG_USEC when WATCHDOG_PID is unset or names pid.
func New(getenv func(string) string, pid int) *Notifier {
	n := &Notifier{}
	socket := getenv("NOTIFY_SOCKET")
	if socket == "" {
		return n
	}
	if strings.HasPrefix(socket, "@") {
		socket = "\x00" + socket[1:]
	}
	n.addr = &net.UnixAddr{Name: socket, Net: "unixgram"}
	if wpid := getenv("WATCHDOG_PID"); wpid == "" || wpid == strconv.Itoa(pid) {
		if usec, err := strconv.ParseInt(getenv("WATCHDOG_USEC"), 10, 64); err == nil && usec > 0 {
			n.watchdog = time.Duration(usec) * time.Microsecond
		}
	}
	return n
}

// Enabled reports whether a service manager listens.
func (n *Notifier) Enabled() bool { return n.addr != nil }

// Watchdog is the interval within which the manager wants WATCHDOG=1, or
// 0 when it wants none.
func (n *Notifier) Watchdog() time.Duration { return n.watchdog }

// Send sends the lines of state ("READY=1", "STATUS=..."), as one
// datagram.
func (n *Notifier) Send(state ...string) error {
	if n.addr == nil {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	msg := strings.Join(state, "\n")
	if _, err := conn.Write([]byte(msg)); err != nil {
		return err
	}
	return nil
}

// Ready tells the manager the service is up, with its status.
func (n *Notifier) Ready(status string) error { return n.Send("READY=1", "STATUS="+status) }

// Reloading tells the manager a reload begins, at the monotonic clock's
// now, as Type=notify-reload requires.
func (n *Notifier) Reloading() error {
	return n.Send("RELOADING=1", "MONOTONIC_USEC="+strconv.FormatInt(monotonicUsec(), 10))
}

// Stopping tells the manager the service is stopping.
func (n *Notifier) Stopping(status string) error { return n.Send("STOPPING=1", "STATUS="+status) }

// Status updates the status line systemctl status shows.
func (n *Notifier) Status(status string) error { return n.Send("STATUS=" + status) }

// Alive tells the watchdog the service is alive.
func (n *Notifier) Alive() error { return n.Send("WATCHDOG=1") }
