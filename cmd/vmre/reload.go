package main

import (
	"context"
	"strings"

	"connectrpc.com/connect"

	"github.com/vmre/vmre/admin"
	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
)

const reloadHead = `Usage: vmre reload [flags]

reload makes a running node read its plugin directory, aliases and pins
again and reconcile its VMs with them, as systemctl reload does (the admin
service's Reload; docs/NODE.md): new VMs start, a VM whose file changed
rolls its new version out (it takes the old one's place once healthy, or
goes away by itself: docs/NODE.md, "Upgrading a VM"), a VM whose file left
stops. It prints what became of each entry, and exits 0 when nothing was
refused, 1 when an entry was (it is listed with why). It reloads the node
it talks to, and no other.

Examples:
  vmre reload
  vmre reload --json | jq '.failed'

`

func reloadCommand(ctx context.Context, args []string, e env) int {
	var f clientFlags
	var asJSON bool
	fs := newFlagSet("reload")
	f.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON, as the admin service's Reload answers")
	pos, err := parseArgs(fs, reloadHead, clientTail+clientCodesHelp, args, e)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) > 0 {
		return usagef(fs, e, "unexpected argument %q: reload reloads the whole plugin directory", pos[0])
	}
	c, done, err := f.client(e)
	if err != nil {
		return reportFailure(e, "reload", err, asJSON)
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	res, err := c.Reload(ctx, connect.NewRequest(&adminv1.ReloadRequest{}))
	if err != nil {
		return reportFailure(e, "reload", err, asJSON)
	}
	r := res.Msg
	if asJSON {
		b, err := admin.JSON(r)
		if err != nil {
			return clientFail(e, "reload", err)
		}
		e.stdout.Write(b)
	} else {
		text := e.textFor(e.stdout, false)
		var rows [][]string
		for _, group := range []struct {
			result string
			names  []string
		}{{"added", r.GetAdded()}, {"changed", r.GetChanged()}, {"known bad", r.GetKnownBad()}, {"removed", r.GetRemoved()},
			{"unchanged", r.GetUnchanged()}} {
			for _, name := range group.names {
				detail := "-"
				switch group.result {
				case "changed":
					detail = "its new version rolls out (vmre rollout " + name + " follows it, vmre ps shows it)"
				case "known bad":
					detail = "its file holds a version that failed its rollout before: not rolled out (vmre rollout " + name + " --force)"
				case "removed":
					detail = "its file left the directory"
				}
				rows = append(rows, []string{text(name), group.result, detail})
			}
		}
		for _, p := range r.GetFailed() {
			detail := text(p.GetError())
			if !strings.HasPrefix(detail, p.GetKind()) {
				detail = p.GetKind() + ": " + detail
			}
			rows = append(rows, []string{text(p.GetEntry()), "refused", detail})
		}
		table(e.stdout, []string{"ENTRY", "RESULT", "DETAIL"}, rows, nil, "")
	}
	if len(r.GetFailed()) > 0 {
		return exitFailure
	}
	return exitOK
}
