package registry

import "fmt"

// Kind says why an entry was refused; its String is the name that logs,
// `vmre reload` and the admin API show: "unreadable", "not a regular
// file", "not executable", "name collision", "duplicate alias", "unknown
// VM", "malformed", "pin mismatch", "no pin", "missing file", "seal
// failed". Code that acts on a cause matches the Problem's error instead:
// errors.As with *PinMismatchError, errors.Is with fs.ErrNotExist,
// fs.ErrPermission or vmre.ErrInvalidConfig.
type Kind int

// The kinds of Problem.
const (
	// kindUnreadable: the file (or the aliases or pins file) could not be
	// stat'ed, opened or read. The error wraps the fs error.
	kindUnreadable Kind = iota + 1
	// kindNotRegular: the entry is not a regular file (a socket, a FIFO, a
	// device).
	kindNotRegular
	// kindNotExecutable: a regular file without execute permission (on
	// Windows, without an .exe or .com extension). The error wraps
	// fs.ErrPermission.
	kindNotExecutable
	// kindNameCollision: two files name the same VM (such as "foo" and
	// "foo.exe"), or an alias is also a VM ID of the aliases file. Every
	// claimant is refused.
	kindNameCollision
	// kindDuplicateAlias: one alias is given to two VMs. The alias is
	// refused; the VMs load under their other names.
	kindDuplicateAlias
	// kindUnknownVM: the aliases file gives aliases to a VM that has no file
	// in the directory.
	kindUnknownVM
	// kindMalformed: the aliases file, or a line of the pins file, cannot be
	// parsed, or a pins line names a file pinned on an earlier line.
	kindMalformed
	// kindPinMismatch: the file's digest is not its pin. The error wraps a
	// *PinMismatchError carrying both digests.
	kindPinMismatch
	// kindUnpinned: pins are required (or the pins file could not be read)
	// and the file has no pin. The error gives the file's digest.
	kindUnpinned
	// kindMissingFile: the pins file pins a name that the directory does
	// not hold. The error wraps fs.ErrNotExist.
	kindMissingFile
	// kindSeal: the sealed copy of a pinned file could not be made (see
	// VM.Sealed).
	kindSeal
	// kindBadName: a file name, or a VM ID or alias of the aliases file,
	// is not valid UTF-8 or holds a control character (a newline, an
	// escape), so it cannot be a VM's name: a name is shown in logs, on
	// terminals, in metric labels and in the admin API. The entry is
	// refused; the Problem's Entry shows it escaped (bad\xffname).
	kindBadName
)

var kindNames = [...]string{
	kindUnreadable:     "unreadable",
	kindNotRegular:     "not a regular file",
	kindNotExecutable:  "not executable",
	kindNameCollision:  "name collision",
	kindDuplicateAlias: "duplicate alias",
	kindUnknownVM:      "unknown VM",
	kindMalformed:      "malformed",
	kindPinMismatch:    "pin mismatch",
	kindUnpinned:       "no pin",
	kindMissingFile:    "missing file",
	kindSeal:           "seal failed",
	kindBadName:        "bad name",
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
