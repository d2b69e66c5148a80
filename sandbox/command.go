package sandbox

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
)

// Cmd is a VM's command made to run through the sandbox's init step
// (Command). Start its Cmd as the VM's (launcher.Launch it), then read the
// init step's Report.
type Cmd struct {
	// Cmd is the command to start: the init step, which applies the
	// policy and execs the VM. The VM's own command when the level is Off.
	Cmd *exec.Cmd

	report *os.File   // the read end of the report pipe
	child  []*os.File // our copies of what only the init step needs
	off    *Report    // the report of a launch that has no init step

	once sync.Once
	rep  *Report
	err  error
}

// maxReport bounds what the node reads of a report.
const maxReport = 1 << 20

// message is a line the init step writes on its report pipe: the report,
// then, if the exec of the VM failed, a line with that error alone.
type message struct {
	Report *Report `json:"report,omitempty"`
	// Error is why the init step did not exec the VM (a Required policy
	// it could not apply, a path it could not open, the exec itself).
	Error string `json:"error,omitempty"`
	// Refused holds the missing rules of a launch that Required refused.
	Refused []Rule `json:"refused,omitempty"`
}

// Report returns what the init step applied. Call it once the command has
// started, or failed to start: after launcher.Launch returned, or from its
// Ready or LaunchFailed hook. The init step writes its report before it
// execs the VM, so Report does not wait then; called earlier, it waits
// until the init step has exec'd the VM or exited. It closes the node's
// copies of the init step's descriptors, and is safe to call more than
// once: later calls return the first's result.
//
// The error is a *RefusedError when Required refused the launch, and says
// why otherwise when the init step did not exec the VM; the report is
// returned with it when the init step sent one.
func (c *Cmd) Report() (*Report, error) {
	c.once.Do(func() {
		if c.off != nil {
			c.rep = c.off
			return
		}
		c.closeChild()
		defer c.report.Close()
		c.rep, c.err = readReport(io.LimitReader(c.report, maxReport))
	})
	return c.rep, c.err
}

// Close releases the node's descriptors of a command that will not be
// started (Report does it too). Never call it before the command's start:
// the init step would miss its descriptors.
func (c *Cmd) Close() error {
	c.Report()
	return nil
}

func (c *Cmd) closeChild() {
	for _, f := range c.child {
		f.Close()
	}
	c.child = nil
}

// readReport reads the init step's messages.
func readReport(r io.Reader) (*Report, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxReport)
	var rep *Report
	var msgs []message
	for sc.Scan() {
		var m message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return rep, fmt.Errorf("sandbox init step: unreadable report: %w", err)
		}
		if m.Report != nil && rep == nil {
			rep = m.Report
		}
		msgs = append(msgs, m)
	}
	if err := sc.Err(); err != nil {
		return rep, fmt.Errorf("sandbox init step: read its report: %w", err)
	}
	if len(msgs) == 0 {
		return nil, errNoReport
	}
	for _, m := range msgs {
		if len(m.Refused) > 0 {
			return rep, &RefusedError{Missing: m.Refused}
		}
		if m.Error != "" {
			return rep, errors.New("sandbox init step: " + m.Error)
		}
	}
	return rep, nil
}

// errNoReport is the error of a command whose init step sent nothing.
var errNoReport = errors.New("sandbox init step sent no report: it did not start, it was killed before " +
	"it applied the policy, or the program it runs (Options.Executable) does not link package sandbox")
