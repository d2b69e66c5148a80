package main

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"connectrpc.com/connect"

	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/gen/vmre/admin/v1/adminv1connect"
)

// vmNotFound is a name no VM of the node answers to, with the names that
// do: exit code 6.
type vmNotFound struct {
	name  string
	names []string
}

func (e *vmNotFound) Error() string {
	if len(e.names) == 0 {
		return fmt.Sprintf("no VM named %q: the node has none", e.name)
	}
	return fmt.Sprintf("no VM named %q (names: %s)", e.name, strings.Join(e.names, ", "))
}

// notFound turns the not_found answer of a call about name into a
// vmNotFound that lists the node's names; other errors pass.
func notFound(ctx context.Context, c adminv1connect.AdminServiceClient, name string, err error) error {
	if connect.CodeOf(err) != connect.CodeNotFound {
		return err
	}
	nf := &vmNotFound{name: name}
	if res, lerr := c.ListVMs(ctx, connect.NewRequest(&adminv1.ListVMsRequest{})); lerr == nil {
		for _, vm := range res.Msg.GetVms() {
			nf.names = append(nf.names, displayName(vm))
		}
	}
	return nf
}

// displayName is a VM as operators name it: its first alias when it has
// one, else its ID.
func displayName(vm *adminv1.VM) string {
	if a := vm.GetAliases(); len(a) > 0 {
		return a[0]
	}
	return vm.GetName()
}

// nameWidth is where ps cuts a long VM ID (AvalancheGo's are 49
// characters), unless --no-trunc.
const nameWidth = 20

// truncate cuts s to width runes with an ellipsis.
func truncate(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}

// stateName is a VM's state as the view carries it, in lower case:
// running, crashloop, and whatever states a newer node adds.
func stateName(vm *adminv1.VM) string {
	return strings.ToLower(strings.TrimPrefix(vm.GetState().String(), "VM_STATE_"))
}

// shortDigest is the first 12 hex digits of a digest, as docker shows an
// image ID.
func shortDigest(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	if d == "" {
		return "-"
	}
	return d
}

// listVMs is the node's VMs.
func listVMs(ctx context.Context, c adminv1connect.AdminServiceClient) ([]*adminv1.VM, error) {
	res, err := c.ListVMs(ctx, connect.NewRequest(&adminv1.ListVMsRequest{}))
	if err != nil {
		return nil, err
	}
	return res.Msg.GetVms(), nil
}
