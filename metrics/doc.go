// Package metrics gives a node Prometheus metrics of its VMs, built on
// prometheus/client_golang: counters and a histogram fed by the launcher's
// and the engine's hooks (launches, handshake durations, exits, engine
// calls, dropped output), and figures read at scrape time from the
// supervisor's state and from each running VM's process (CPU, memory, open
// fds, start time). Nothing is derived from log text.
//
// Handler serves them from a registry of their own; an embedder passes its
// own registry as Config.Registerer to serve them beside its metrics, and
// asks for the Go and process collectors of the host with
// Config.HostCollectors only when its registry lacks them.
//
// VMs are labelled by name; no pid, address or token becomes a label, so
// the number of series is bounded by the number of VMs. docs/OPERATIONS.md
// lists the metrics and shows a scrape.
package metrics
