package launcher

import (
	"errors"
	"strings"

	"github.com/vmre/vmre"
)

// HandshakeError is the error of a failed launch. Its text starts
// "handshake failed: "; errors.Is matches vmre.ErrHandshakeFailed and the
// sentinels of its case (see DESIGN.md's table).
type HandshakeError struct {
	// Reason says what failed.
	Reason string
	// Hint says what to do about it, when there is something to say.
	Hint string
	// Pid is the VM's process id, or 0 when it was never started. The
	// process is gone by the time Launch returns the error.
	Pid int
	// Exit is how the VM ended, when it ended before its handshake.
	Exit *Exit
	// Stderr holds the VM's last stderr lines, when it ended first.
	Stderr []string

	err       error   // the cause, for errors.As and errors.Is
	sentinels []error // further sentinels the error matches
}

func (e *HandshakeError) Error() string {
	var b strings.Builder
	b.WriteString("handshake failed: ")
	b.WriteString(e.Reason)
	if e.Hint != "" {
		b.WriteString("; ")
		b.WriteString(e.Hint)
	}
	if len(e.Stderr) > 0 {
		b.WriteString("\nlast stderr lines of the VM:\n\t")
		b.WriteString(strings.Join(e.Stderr, "\n\t"))
	}
	return b.String()
}

// Is matches vmre.ErrHandshakeFailed and the sentinels of the case.
func (e *HandshakeError) Is(target error) bool {
	if target == vmre.ErrHandshakeFailed {
		return true
	}
	for _, s := range e.sentinels {
		if target == s {
			return true
		}
	}
	return false
}

// Unwrap returns the cause.
func (e *HandshakeError) Unwrap() error { return e.err }

// phaseError is a failure of a phase of the launch other than the VM's own
// answer (exec, listen): it still counts as a handshake failure.
func phaseError(phase string, err error) *HandshakeError {
	e := &HandshakeError{Reason: phase + ": " + err.Error(), err: err}
	if errors.Is(err, vmre.ErrInvalidConfig) {
		e.sentinels = append(e.sentinels, vmre.ErrInvalidConfig)
	}
	return e
}
