// Package execdiag tells why the system refused to exec a file, from what
// the file itself says: an ELF program built for another architecture, a
// program of another system, a script without a #! line or with a
// missing interpreter, a file system mounted noexec. The launcher adds its
// finding to an exec failure, and vmre doctor reports it, so that "exec
// format error" comes with its cause.
package execdiag

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"syscall"
)

// headBytes is how much of a file Explain reads for its #! line.
const headBytes = 256

// Explain returns why exec of path failed with err, in a sentence that
// starts with what the file is, or "" when the file says nothing more than
// err does.
func Explain(path string, err error) string {
	switch {
	case errors.Is(err, syscall.ENOEXEC):
		return notExecutable(path)
	case errors.Is(err, fs.ErrPermission):
		if noexecMount(path) {
			return "its file system is mounted noexec: run it from one mounted with exec"
		}
		if interp, ok := shebang(path); ok {
			if st, err := os.Stat(interp); err == nil && st.Mode().Perm()&0o111 == 0 {
				return fmt.Sprintf("its #! line names %s, which is not executable", interp)
			}
		}
	case errors.Is(err, fs.ErrNotExist):
		if interp, ok := shebang(path); ok {
			if _, err := os.Stat(interp); err != nil {
				return fmt.Sprintf("its #! line names %s, which does not exist: install it, or correct the #! line", interp)
			}
		}
		if loader := elfInterpreter(path); loader != "" {
			if _, err := os.Stat(loader); err != nil {
				return fmt.Sprintf("it is a dynamically linked program whose loader %s does not exist here (built for another system or C library): build it statically, or on this system", loader)
			}
		}
	}
	return ""
}

// notExecutable tells what a file the kernel does not take as a program
// is.
func notExecutable(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	head := make([]byte, headBytes)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte("\x7fELF")):
		ef, err := elf.NewFile(f)
		if err != nil {
			return "it is a damaged ELF file: " + err.Error()
		}
		defer ef.Close()
		arch := Arch(ef.Machine, ef.Class, ef.ByteOrder == binary.BigEndian)
		if !RunsHere(runtime.GOOS, arch) {
			return fmt.Sprintf("it is an ELF program built for %s; this machine is %s: build it for %s (GOARCH=%s go build)",
				arch, runtime.GOARCH, runtime.GOARCH, runtime.GOARCH)
		}
		return fmt.Sprintf("it is an ELF program for %s that this system does not take", arch)
	case bytes.HasPrefix(head, []byte("MZ")):
		return "it is a Windows program: build it for " + runtime.GOOS
	case hasMachO(head):
		return "it is a macOS program: build it for " + runtime.GOOS
	case bytes.HasPrefix(head, []byte("#!")):
		line, _, _ := bytes.Cut(head, []byte("\n"))
		if bytes.HasSuffix(line, []byte("\r")) {
			return "its #! line ends in a carriage return (Windows line endings), which becomes part of the interpreter's name: convert the file to Unix line endings"
		}
		return "its #! line is not one the system takes: " + strings.TrimSpace(string(line))
	}
	return "it is neither a program nor a script with a #! line: start a script with one, such as #!/bin/sh"
}

// hasMachO reports whether head starts as a Mach-O file.
func hasMachO(head []byte) bool {
	for _, magic := range []string{"\xfe\xed\xfa\xce", "\xfe\xed\xfa\xcf", "\xce\xfa\xed\xfe", "\xcf\xfa\xed\xfe", "\xca\xfe\xba\xbe"} {
		if bytes.HasPrefix(head, []byte(magic)) {
			return true
		}
	}
	return false
}

// shebang returns the interpreter of a script's #! line.
func shebang(path string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	head := make([]byte, headBytes)
	n, _ := io.ReadFull(f, head)
	line, _, _ := bytes.Cut(head[:n], []byte("\n"))
	if !bytes.HasPrefix(line, []byte("#!")) {
		return "", false
	}
	fields := strings.Fields(string(line[2:]))
	if len(fields) == 0 {
		return "", false
	}
	return fields[0], true
}

// elfInterpreter returns the loader (PT_INTERP) of a dynamically linked
// ELF program, or "".
func elfInterpreter(path string) string {
	ef, err := elf.Open(path)
	if err != nil {
		return ""
	}
	defer ef.Close()
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(io.LimitReader(p.Open(), 4096))
			if err != nil {
				return ""
			}
			return string(bytes.TrimRight(b, "\x00"))
		}
	}
	return ""
}

// Arch is the GOARCH name of an ELF machine, or the machine's own name
// for one Go does not build for.
func Arch(m elf.Machine, class elf.Class, bigEndian bool) string {
	is64 := class == elf.ELFCLASS64
	switch m {
	case elf.EM_X86_64:
		return "amd64"
	case elf.EM_386:
		return "386"
	case elf.EM_AARCH64:
		return "arm64"
	case elf.EM_ARM:
		return "arm"
	case elf.EM_RISCV:
		if is64 {
			return "riscv64"
		}
		return "riscv"
	case elf.EM_PPC64:
		if bigEndian {
			return "ppc64"
		}
		return "ppc64le"
	case elf.EM_S390:
		return "s390x"
	case elf.EM_LOONGARCH:
		return "loong64"
	case elf.EM_MIPS:
		switch {
		case is64 && bigEndian:
			return "mips64"
		case is64:
			return "mips64le"
		case bigEndian:
			return "mips"
		}
		return "mipsle"
	}
	return strings.ToLower(strings.TrimPrefix(m.String(), "EM_"))
}

// RunsHere reports whether a program built for goos and goarch runs on
// this machine: the same platform, or 32-bit x86 or ARM on their 64-bit
// kin.
func RunsHere(goos, goarch string) bool {
	if goos != runtime.GOOS {
		return false
	}
	return goarch == runtime.GOARCH ||
		runtime.GOARCH == "amd64" && goarch == "386" ||
		runtime.GOARCH == "arm64" && goarch == "arm"
}
