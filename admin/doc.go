// Package admin serves vmre.admin.v1.AdminService, the control plane of a
// running node: list and watch its VMs, stop, start and restart one,
// reload the plugin directory, and tail a VM's logs. Its handlers are
// Connect handlers over a supervisor's state, so curl, grpcurl, buf curl
// and any Connect, gRPC or gRPC-Web client reach them on the node mux.
//
// With a token, every call needs "Authorization: Bearer TOKEN", compared
// in constant time; refusals are unauthenticated, logged at most 10 a
// second, and told to Config.OnCall like every call.
//
// Logs keeps a bounded backlog of each VM's log records for TailLogs: it
// is a slog.Handler in the host's chain of handlers, fed by the records of
// the VMs' output, not by their text. docs/OPERATIONS.md shows every call.
package admin
