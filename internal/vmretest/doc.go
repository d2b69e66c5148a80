// Package vmretest holds what the tests of vmre's packages share, in the
// spirit of net/http/httptest: re-running the test binary as a helper
// process (a VM, a host), engines served on loopback, a slog handler that
// records, a recorder of the launcher's events, and small utilities.
//
// Tests wait on events and channels, never on log text: Recorder is for
// tests whose subject is the log output itself.
package vmretest
