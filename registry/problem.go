package registry

import "fmt"

// Kind says why an entry was refused.
type Kind int

// The kinds of Problem.
const (
	// KindUnreadable: the file (or the aliases or pins file) could not be
	// stat'ed, opened or read. The error wraps the fs error.
	KindUnreadable Kind = iota + 1
	// KindNotRegular: the entry is not a regular file (a socket, a FIFO, a
	// device).
	KindNotRegular
	// KindNotExecutable: a regular file without execute permission (on
	// Windows, without an .exe or .com extension). The error wraps
	// fs.ErrPermission.
	KindNotExecutable
	// KindNameCollision: two files name the same VM (such as "foo" and
	// "foo.exe"), or an alias is also a VM ID of the aliases file. Every
	// claimant is refused.
	KindNameCollision
	// KindDuplicateAlias: one alias is given to two VMs. The alias is
	// refused; the VMs load under their other names.
	KindDuplicateAlias
	// KindUnknownVM: the aliases file gives aliases to a VM that has no file
	// in the directory.
	KindUnknownVM
	// KindMalformed: the aliases file, or a line of the pins file, cannot be
	// parsed, or a pins line names a file pinned on an earlier line.
	KindMalformed
	// KindPinMismatch: the file's digest is not its pin. The error wraps a
	// *PinMismatchError carrying both digests.
	KindPinMismatch
	// KindUnpinned: pins are required (or the pins file could not be read)
	// and the file has no pin. The error gives the file's digest.
	KindUnpinned
	// KindMissingFile: the pins file pins a name that the directory does
	// not hold. The error wraps fs.ErrNotExist.
	KindMissingFile
	// KindSeal: the sealed copy of a pinned file could not be made (see
	// VM.Sealed).
	KindSeal
	// KindBadName: a file name, or a VM ID or alias of the aliases file,
	// is not valid UTF-8 or holds a control character (a newline, an
	// escape), so it cannot be a VM's name: a name is shown in logs, on
	// terminals, in metric labels and in the admin API. The entry is
	// refused; the Problem's Entry shows it escaped (bad\xffname).
	KindBadName
)

var kindNames = [...]string{
	KindUnreadable:     "unreadable",
	KindNotRegular:     "not a regular file",
	KindNotExecutable:  "not executable",
	KindNameCollision:  "name collision",
	KindDuplicateAlias: "duplicate alias",
	KindUnknownVM:      "unknown VM",
	KindMalformed:      "malformed",
	KindPinMismatch:    "pin mismatch",
	KindUnpinned:       "no pin",
	KindMissingFile:    "missing file",
	KindSeal:           "seal failed",
	KindBadName:        "bad name",
}

func (k Kind) String() string {
	if k > 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// MarshalText makes a Kind read as its name in JSON.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Problem is one refused entry: a file of the plugin directory, an alias, a
// line of the pins file, or one of the two files themselves. The other
// entries load regardless.
type Problem struct {
	// Entry names what was refused: a file name of the directory, an
	// alias, a VM ID of the aliases file, the path of the aliases or pins
	// file, or PINSFILE:LINE. It is printable text: a name that is not
	// valid UTF-8 or holds control characters is escaped as the node's log
	// escapes it (bad\xffname, evil\nfake).
	Entry string
	// ID is the VM the entry concerns, or "" when there is none.
	ID string
	// Kind says why it was refused.
	Kind Kind
	// Err says what failed, why and what to do; it unwraps to the cause
	// (an fs error, a *PinMismatchError, vmre.ErrInvalidConfig).
	Err error
}

func (p *Problem) Error() string { return p.Entry + ": " + p.Err.Error() }

// Unwrap returns the cause.
func (p *Problem) Unwrap() error { return p.Err }
