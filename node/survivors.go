package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmre/vmre/internal/atomicfile"
	"github.com/vmre/vmre/internal/proctree"
	"github.com/vmre/vmre/launcher"
)

// runningFile is the file of the data directory that lists the node's
// running VMs: a node started again after it was killed (SIGKILL, a
// crash, an OOM kill) stops those of its VMs that outlived it before it
// launches anything, so that no VM runs twice.
const runningFile = "running.json"

// runningJSON is the file's content.
type runningJSON struct {
	// BootID is the kernel's boot id: start times count from the boot, so
	// a record of another boot names no process.
	BootID string `json:"boot_id"`
	// VMs are the VMs that run, by pid.
	VMs []runningVM `json:"vms"`
}

// runningVM is one running VM as the record keeps it. Its pid, start time
// and executable name its process: a pid given to another process since
// has another start time.
type runningVM struct {
	Name  string `json:"name"`
	Pid   int    `json:"pid"`
	Start uint64 `json:"start"` // clock ticks since boot (/proc/PID/stat)
	// Exe is what /proc/PID/exe named once the VM had handshaken (a
	// sandboxed VM's init step has exec'd the VM by then); "" before.
	Exe string `json:"exe,omitempty"`
}

// SurvivorInfo is a VM that a previous run of the node left running, which
// the node stopped at its start.
type SurvivorInfo struct {
	Name string
	Pid  int
	Exe  string
	// Killed tells that it ignored SIGTERM for the graceful timeout and
	// was killed; others exited on SIGTERM.
	Killed bool
}

// running keeps the record of the node's running VMs in its data
// directory. The launcher's hooks update it in memory; a goroutine of its
// own writes it, whole, whenever it changed, off the launches' path.
type running struct {
	path   string
	bootID string
	log    *slog.Logger

	mu    sync.Mutex
	vms   map[int]runningVM
	dirty chan struct{} // holds a token while the file is behind
	stop  chan struct{}
	done  chan struct{}
}

func newRunning(dataDir string, log *slog.Logger) *running {
	r := &running{path: filepath.Join(dataDir, runningFile), bootID: bootID(), log: log,
		vms: make(map[int]runningVM), dirty: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	return r
}

// bootID is the kernel's boot id, or "" where there is none.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// hooks are the launcher's events that keep the record.
func (r *running) hooks() *launcher.Hooks {
	return &launcher.Hooks{
		Started: func(i launcher.StartedInfo) {
			st, err := proctree.ReadStat(i.Pid)
			if err != nil {
				return // gone already, or no /proc
			}
			r.update(func() { r.vms[i.Pid] = runningVM{Name: i.VM, Pid: i.Pid, Start: st.Start} })
		},
		Ready: func(i launcher.ReadyInfo) {
			exe, err := os.Readlink("/proc/" + strconv.Itoa(i.Pid) + "/exe")
			if err != nil {
				return
			}
			r.update(func() {
				if vm, ok := r.vms[i.Pid]; ok {
					vm.Exe = exe
					r.vms[i.Pid] = vm
				}
			})
		},
		Exited: func(i launcher.ExitInfo) { r.update(func() { delete(r.vms, i.Pid) }) },
	}
}

// update changes the record in memory and has the writer write it.
func (r *running) update(change func()) {
	r.mu.Lock()
	change()
	r.mu.Unlock()
	select {
	case r.dirty <- struct{}{}:
	default:
	}
}

// run writes the record whenever it changed, until close; then once more.
func (r *running) run() {
	defer close(r.done)
	for {
		select {
		case <-r.dirty:
			r.write()
		case <-r.stop:
			r.write()
			return
		}
	}
}

// close stops the writer once it has written the last state: the VMs have
// stopped, and the record is empty.
func (r *running) close() {
	close(r.stop)
	<-r.done
}

func (r *running) write() {
	r.mu.Lock()
	j := runningJSON{BootID: r.bootID, VMs: make([]runningVM, 0, len(r.vms))}
	for _, vm := range r.vms {
		j.VMs = append(j.VMs, vm)
	}
	r.mu.Unlock()
	slices.SortFunc(j.VMs, func(a, b runningVM) int { return a.Pid - b.Pid })
	b, err := json.MarshalIndent(j, "", "  ")
	if err == nil {
		err = atomicfile.Write(r.path, append(b, '\n'), 0o600)
	}
	if err != nil {
		r.log.Error("cannot keep the record of the running VMs: a node killed now may leave them running twice", slog.String("file", r.path), slog.String("error", err.Error()))
	}
}

// stopSurvivors stops the VMs that the record of a previous run names and
// that still run, as systemd stops a unit's leftover processes: SIGTERM
// and SIGCONT to each, and to the processes of its group; SIGKILL to what
// is left after grace. It returns what it stopped, once they are gone.
func (r *running) stopSurvivors(grace time.Duration) []SurvivorInfo {
	b, err := os.ReadFile(r.path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			r.log.Warn("cannot read the record of the VMs a previous run left running", slog.String("file", r.path), slog.String("error", err.Error()))
		}
		return nil
	}
	var j runningJSON
	if err := json.Unmarshal(b, &j); err != nil {
		r.log.Warn("the record of the VMs a previous run left running is not valid; no VM of it is stopped", slog.String("file", r.path), slog.String("error", err.Error()))
		return nil
	}
	if j.BootID == "" || j.BootID != r.bootID {
		return nil // another boot: nothing of it runs
	}
	type survivor struct {
		info  SurvivorInfo
		procs []proctree.Stat // the VM, then its group's other processes
	}
	var found []*survivor
	var all []proctree.Stat
	for _, vm := range j.VMs {
		st, err := proctree.ReadStat(vm.Pid)
		if err != nil || st.Start != vm.Start || st.Zombie() {
			continue // gone; its pid may be another process's
		}
		exe, _ := os.Readlink("/proc/" + strconv.Itoa(vm.Pid) + "/exe")
		if vm.Exe != "" && exe != vm.Exe {
			continue
		}
		if all == nil {
			all = proctree.All()
		}
		s := &survivor{info: SurvivorInfo{Name: vm.Name, Pid: vm.Pid, Exe: exe}, procs: []proctree.Stat{st}}
		for _, p := range all {
			if p.Pgid == vm.Pid && p.Pid != vm.Pid && p.Start >= vm.Start && !p.Zombie() {
				s.procs = append(s.procs, p)
			}
		}
		found = append(found, s)
	}
	if len(found) == 0 {
		return nil
	}
	var procs []proctree.Stat
	for _, s := range found {
		r.log.Warn("stopping a VM that a previous run of the node left running", slog.String("vm", s.info.Name),
			slog.Int("pid", s.info.Pid), slog.String("exe", s.info.Exe), slog.Int("processes", len(s.procs)))
		procs = append(procs, s.procs...)
	}
	for _, p := range procs {
		terminate(p)
	}
	left := waitGone(procs, grace)
	for _, s := range found {
		for _, p := range left {
			if p.Pid == s.info.Pid {
				s.info.Killed = true
			}
		}
	}
	for _, p := range left {
		proctree.Signal(p, syscall.SIGKILL)
	}
	if left := waitGone(left, grace+killWait); len(left) > 0 {
		r.log.Error("processes a previous run left running outlived SIGKILL", slog.Int("count", len(left)))
	}
	out := make([]SurvivorInfo, 0, len(found))
	for _, s := range found {
		how := "exited on SIGTERM"
		if s.info.Killed {
			how = fmt.Sprintf("killed after a graceful timeout of %s", grace)
		}
		r.log.Warn("stopped a VM that a previous run of the node left running", slog.String("vm", s.info.Name),
			slog.Int("pid", s.info.Pid), slog.String("how", how))
		out = append(out, s.info)
	}
	return out
}

// killWait bounds the wait, beyond the grace, for processes sent SIGKILL.
const killWait = 5 * time.Second

// waitGone waits until each of ps has exited, or timeout passes, and
// returns those that still run. It watches each through a pidfd, which
// becomes readable when its process exits.
func waitGone(ps []proctree.Stat, timeout time.Duration) []proctree.Stat {
	deadline := time.Now().Add(timeout)
	left := ps
	for len(left) > 0 {
		left = slices.DeleteFunc(slices.Clone(left), func(p proctree.Stat) bool {
			now, err := proctree.ReadStat(p.Pid)
			return err != nil || now.Start != p.Start || now.Zombie()
		})
		wait := time.Until(deadline)
		if len(left) == 0 || wait <= 0 {
			break
		}
		proctree.WaitAny(left, wait)
	}
	return left
}
