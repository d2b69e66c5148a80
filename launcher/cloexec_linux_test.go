package launcher_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
)

// keepInheritedKey makes an "fd-node" skip CloseInheritedFDs: the
// control, which shows what a VM would get without it.
const keepInheritedKey = "VMRE_TEST_KEEP_INHERITED"

func init() {
	// fd-node: a node started with extra descriptors; it marks them
	// close-on-exec (unless keepInheritedKey), launches an "fds" VM, and
	// passes on its stdout.
	vms["fd-node"] = func([]string) int {
		if os.Getenv(keepInheritedKey) == "" {
			if err := launcher.CloseInheritedFDs(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		l, err := launcher.New(launcher.Config{Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)), Stdout: os.Stdout})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer l.Close()
		// The VM exits before any handshake: the launch fails once its
		// output has been read to its end.
		if _, err := l.Launch(context.Background(), vmretest.Command("fds")); err == nil {
			fmt.Fprintln(os.Stderr, "the fds VM completed a handshake")
			return 1
		}
		return 0
	}
	// fds: says "fd=N TARGET" for each descriptor it holds, then
	// "lease=N", and exits.
	vms["fds"] = func([]string) int {
		self := "/proc/self/fd"
		entries, err := os.ReadDir(self)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		for _, e := range entries {
			target, _ := os.Readlink(filepath.Join(self, e.Name()))
			fmt.Printf("fd=%s %s\n", e.Name(), target)
		}
		fmt.Printf("lease=%s\n", os.Getenv(vmre.LeaseFDKey))
		return 0
	}
}

// TestVMGetsNoStrayDescriptor: a node started holding a descriptor on a
// secret file (a shell's `exec 4</secret`) and one on a pipe launches a
// VM, which holds neither: stdin, stdout, stderr, its lease pipe, and what
// its own runtime opens. Without CloseInheritedFDs, the VM holds both.
func TestVMGetsNoStrayDescriptor(t *testing.T) {
	t.Parallel()
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		keep bool
	}{{"CloseInheritedFDs", false}, {"without it", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := os.Open(secret)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			defer pw.Close()
			var st syscall.Stat_t
			if err := syscall.Fstat(int(pw.Fd()), &st); err != nil {
				t.Fatal(err)
			}
			pipe := fmt.Sprintf("pipe:[%d]", st.Ino)
			out := new(lineLog)
			cmd := vmretest.Command("fd-node")
			// The node's fds 3, 4 and 5, not close-on-exec; the VM's lease
			// pipe takes fd 3.
			cmd.ExtraFiles = []*os.File{pr, f, pw}
			cmd.Stdout, cmd.Stderr = out, os.Stderr
			if tc.keep {
				cmd.Env = append(cmd.Env, keepInheritedKey+"=1")
			}
			if err := cmd.Run(); err != nil {
				t.Fatalf("the node: %v\n%s", err, out)
			}
			lease := out.await(t, "lease=")
			held := map[string]string{} // target -> fd
			var others []string
			for line := range strings.SplitSeq(out.String(), "\n") {
				rest, ok := strings.CutPrefix(line, "fd=")
				if !ok {
					continue
				}
				fd, target, _ := strings.Cut(rest, " ")
				held[target] = fd
				if n, _ := strconv.Atoi(fd); n > 2 && fd != lease {
					others = append(others, rest)
				}
			}
			t.Logf("the VM's descriptors beside 0, 1, 2 and its lease pipe (%s): %q", lease, others)
			if !tc.keep {
				for _, o := range others {
					// What the VM's Go runtime opens itself: its poller, and
					// the cgroup's CPU quota it reads; and the listing's own
					// descriptor, whose link reads empty once closed.
					_, target, _ := strings.Cut(o, " ")
					if !strings.HasPrefix(target, "anon_inode:") && !strings.HasPrefix(target, "/sys/fs/cgroup/") && target != "" {
						t.Errorf("the VM holds %q, neither the launcher's nor its own runtime's", o)
					}
				}
			}
			_, hasSecret := held[secret]
			_, hasPipe := held[pipe]
			if hasSecret != tc.keep || hasPipe != tc.keep {
				t.Errorf("the VM holds the node's secret file: %v, its pipe: %v; want %v", hasSecret, hasPipe, tc.keep)
			}
		})
	}
}
