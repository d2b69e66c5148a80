package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmre/vmre/admin"
	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
)

const logsHead = `Usage: vmre logs [flags] NAME

logs prints the log records of a VM of a running node, as docker logs and
journalctl -u do: the node keeps a bounded backlog of each VM's records (its
stdout and stderr lines, at the node's --log-level), and the node's own
records about the VM among them, marked [vmre] (launching, running, exited,
waiting to restart, stopped). A line "-- run of pid N --" marks where a run
of the VM begins. With -f it follows the VM, across its restarts, until
Ctrl-C, or until the node stops ("node stopped", exit 0). Flags may come
before or after NAME.

Examples:
  vmre logs chainvm
  vmre logs -f -n 20 chainvm
  vmre logs chainvm --since 10m -t
  vmre logs --since 2026-11-27T11:00:00Z --json chainvm | jq -r .record.message

`

// logsFlags are the flags of logs.
type logsFlags struct {
	clientFlags
	follow, timestamps, asJSON, raw bool
	tail                            string
	since                           string
}

func logsCommand(ctx context.Context, args []string, e env) int {
	var f logsFlags
	fs := newFlagSet("logs")
	f.register(fs)
	fs.BoolVar(&f.follow, "f", false, "follow: print each new record until Ctrl-C or the node's stop")
	fs.BoolVar(&f.follow, "follow", false, "as -f")
	fs.StringVar(&f.tail, "n", "all", "print the last `N` records of the backlog only (0: none, with -f only the new ones)")
	fs.StringVar(&f.tail, "tail", "all", "as -n")
	fs.StringVar(&f.since, "since", "", "print the backlog's records of this last `duration` (10m) or from this time on "+
		"(2026-11-27T11:00:00Z, 2026-11-27 11:00:00, 11:00, a Unix time)")
	fs.BoolVar(&f.timestamps, "t", false, "show each record's time, RFC 3339 with its date")
	fs.BoolVar(&f.timestamps, "timestamps", false, "as -t")
	fs.BoolVar(&f.asJSON, "json", false, "print each record as a JSON line, as the admin service's TailLogs sends it")
	fs.BoolVar(&f.raw, "raw", false, "write the records' bytes as they are, control bytes too, even to a terminal")
	names, err := parseArgs(fs, logsHead, clientTail+clientCodesHelp, args, e)
	if err != nil {
		return flagExit(err)
	}
	if len(names) != 1 {
		return usagef(fs, e, "want one NAME, the VM's name or alias (vmre ps lists them)")
	}
	req := &adminv1.TailLogsRequest{Name: names[0], Follow: f.follow}
	if f.tail != "all" {
		n, err := strconv.ParseUint(f.tail, 10, 32)
		if err != nil {
			return usagef(fs, e, "--tail %q: give a number of records, or all", f.tail)
		}
		req.Tail = new(uint32(n))
	}
	if f.since != "" {
		d, t, err := parseSince(f.since, time.Now())
		if err != nil {
			return usagef(fs, e, "--since %q: %v", f.since, err)
		}
		if d > 0 {
			req.Since = durationpb.New(d)
		} else {
			req.SinceTime = timestamppb.New(t)
		}
	}
	c, done, err := f.client(e)
	if err != nil {
		return reportFailure(e, "logs", err, f.asJSON)
	}
	defer done()
	sig := catchSignals(ctx)
	defer sig.stop()
	stream, err := c.TailLogs(sig.first, connect.NewRequest(req))
	if err != nil {
		return reportFailure(e, "logs", notFound(ctx, c, names[0], err), f.asJSON)
	}
	defer stream.Close()
	p := &recordPrinter{w: e.stdout, timestamps: f.timestamps, text: e.textFor(e.stdout, f.raw)}
	for stream.Receive() {
		if f.asJSON {
			b, _ := admin.JSONLine(stream.Msg())
			e.stdout.Write(b)
			continue
		}
		p.print(stream.Msg())
	}
	switch err := stream.Err(); {
	case sig.first.Err() != nil: // Ctrl-C
	case err != nil:
		return reportFailure(e, "logs", notFound(ctx, c, names[0], err), f.asJSON)
	case f.follow:
		fmt.Fprintln(e.stderr, "vmre logs: node stopped")
	}
	return exitOK
}

// parseSince reads --since: a duration back from now, or a time.
func parseSince(s string, now time.Time) (time.Duration, time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return 0, time.Time{}, fmt.Errorf("give a positive duration, such as 10m")
		}
		return d, time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return 0, t, nil
		}
	}
	for _, layout := range []string{"15:04:05", "15:04"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			y, m, d := now.Date()
			return 0, time.Date(y, m, d, t.Hour(), t.Minute(), t.Second(), 0, time.Local), nil
		}
	}
	if sec, err := strconv.ParseFloat(s, 64); err == nil && sec > 0 {
		return 0, time.Unix(0, int64(sec*1e9)), nil
	}
	return 0, time.Time{}, fmt.Errorf("not a duration (10m, 1h30m) nor a time (2026-11-27T11:00:00Z, 2026-11-27 11:00:00, 11:00, a Unix time)")
}

// recordPrinter prints log records for people: a line each, and a line
// where a run of the VM begins.
type recordPrinter struct {
	w          io.Writer
	timestamps bool
	text       func(string) string // escapes a VM's bytes on a terminal
	pid        int32               // the run of the records printed last
}

// print prints one record, after the run line of a new pid and the note
// of the records missed.
func (p *recordPrinter) print(m *adminv1.TailLogsResponse) {
	r := m.GetRecord()
	if n := m.GetDroppedBefore(); n > 0 {
		fmt.Fprintf(p.w, "-- %d records missed: this reader was too slow --\n", n)
	}
	if pid := r.GetPid(); pid != 0 && pid != p.pid {
		p.pid = pid
		fmt.Fprintf(p.w, "-- run of pid %d --\n", pid)
	}
	var b strings.Builder
	if p.timestamps {
		b.WriteString(r.GetTime().AsTime().Local().Format(timeLayout + " "))
	}
	stream := r.GetStream()
	if stream == admin.NodeStream {
		stream = "[vmre]"
	}
	fmt.Fprintf(&b, "%-5s %-6s %s", r.GetLevel(), stream, p.text(r.GetMessage()))
	for _, a := range r.GetAttrs() {
		v := a.GetValue()
		if v == "" || strings.ContainsAny(v, " \"=") {
			q, _ := json.Marshal(v)
			v = string(q)
		}
		fmt.Fprintf(&b, " %s=%s", p.text(a.GetKey()), p.text(v))
	}
	fmt.Fprintln(p.w, b.String())
}

// timeLayout is how logs -t and events show a time: RFC 3339 with its
// date, to the millisecond.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"
