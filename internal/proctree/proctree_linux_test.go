package proctree_test

import (
	"fmt"
	"io"
	"os"
	"slices"
	"syscall"
	"testing"

	"github.com/vmre/vmre/internal/proctree"
	"github.com/vmre/vmre/internal/vmretest"
)

const markKey = "VMRE_TEST_PROCTREE_MARK"

func TestMain(m *testing.M) {
	vmretest.Main(m, map[string]vmretest.Helper{
		// parent: starts a "sleeper" child in a session of its own, says
		// its pid, then waits for stdin to close.
		"parent": func([]string) int {
			child := vmretest.Command("sleeper")
			child.Env = append(child.Env, markKey+"=1")
			child.Stdin = os.Stdin
			child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			if err := child.Start(); err != nil {
				return 1
			}
			fmt.Println(child.Process.Pid)
			child.Wait()
			return 0
		},
		"sleeper": func([]string) int {
			io.Copy(io.Discard, os.Stdin)
			return 0
		},
	})
}

// TestTree: a process's stat, children, descendants and environment, and
// a signal that reaches it only while it is the process that was read.
func TestTree(t *testing.T) {
	cmd := vmretest.Command("parent")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Process.Kill()
	}()
	var child int
	if _, err := fmt.Fscan(out, &child); err != nil {
		t.Fatal(err)
	}
	parent := cmd.Process.Pid

	st, err := proctree.ReadStat(child)
	if err != nil {
		t.Fatal(err)
	}
	if st.PPid != parent || st.Sid != child || st.Pgid != child || st.Zombie() {
		t.Errorf("the child's stat %+v; want parent %d, its own session and group", st, parent)
	}
	if got := proctree.Children(parent); !slices.Equal(got, []int{child}) {
		t.Errorf("Children(%d) = %v; want [%d]", parent, got, child)
	}
	var walked []int
	proctree.Walk(os.Getpid(), func(pid int) bool { walked = append(walked, pid); return false })
	if !slices.Contains(walked, parent) || !slices.Contains(walked, child) || walked[0] != os.Getpid() {
		t.Errorf("Walk from the test: %v; want it, then %d and %d among its descendants", walked, parent, child)
	}
	if !proctree.HasEnv(child, markKey+"=1") || proctree.HasEnv(parent, markKey+"=1") {
		t.Errorf("HasEnv: the child %v, the parent %v; want the child alone", proctree.HasEnv(child, markKey+"=1"), proctree.HasEnv(parent, markKey+"=1"))
	}

	stale := st
	stale.Start--
	if err := proctree.Signal(stale, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if now, err := proctree.ReadStat(child); err != nil || now.Zombie() {
		t.Fatalf("a signal to another start time reached the child: %+v, %v", now, err)
	}
	if err := proctree.Signal(st, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil { // the parent returns once its child is gone
		t.Fatalf("the parent: %v", err)
	}
	if err := proctree.Signal(st, syscall.SIGKILL); err != nil {
		t.Errorf("a signal to a process gone: %v; want nothing", err)
	}
}
