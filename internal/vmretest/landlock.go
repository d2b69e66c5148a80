package vmretest

import (
	"os"
	"testing"

	"github.com/vmre/vmre/sandbox"
)

// RequireLandlock skips a test that needs Landlock on a kernel without it,
// saying what cannot be tested (what), and fails it under CI=true, whose
// kernel has it.
func RequireLandlock(t testing.TB, what string) {
	t.Helper()
	if sandbox.LandlockABI() > 0 {
		return
	}
	why := "this kernel has no Landlock (not built in, or not in the lsm= boot list): " + what + " cannot be tested"
	if os.Getenv("CI") == "true" {
		t.Fatal(why + "; CI's kernel must have it")
	}
	t.Skip(why)
}
