// Package bench holds the benchmarks of docs/PERFORMANCE.md: the cost of a
// VM's launch, stop and handshake under vmre against a floor of plain
// os/exec code, the throughput of the VM-output path, the host's cost of
// one idle VM, and what pinning a VM costs (its launch from a sealed memfd,
// its load). Run them with `make bench`.
//
// The plugins they launch live under internal/ and are built once per run,
// without the race detector, on the first benchmark that needs them.
package bench
