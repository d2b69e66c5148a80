package sandbox

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// injectArch tells that Start can have a VM stopped under ptrace make
// system calls on this processor.
const injectArch = true

// userCS64 is the code segment of a 64-bit program (Linux's __USER_CS): a
// 32-bit one, under another, has other system calls.
const userCS64 = 0x33

// syscallInsn is the SYSCALL instruction.
var syscallInsn = [2]byte{0x0f, 0x05}

// inject has the VM, stopped at its first instruction, make calls in turn,
// as a debugger calls a function in the program it stops (gdb; reptyr and
// CRIU make system calls so): a SYSCALL instruction in place of the first
// bytes at its instruction pointer, each call's number and arguments in
// its registers, one single step each; then its bytes and registers as
// they were. The VM has run none of its own instructions by then.
func (t *tracee) inject(calls []syscallArgs) error {
	var saved unix.PtraceRegs
	if err := unix.PtraceGetRegs(t.pid, &saved); err != nil {
		return fmt.Errorf("ptrace(PTRACE_GETREGS): %w", err)
	}
	if saved.Cs != userCS64 {
		return errors.New("the VM is not a 64-bit program")
	}
	pc := uintptr(saved.Rip)
	var text [8]byte // ptrace reads and writes a word
	if _, err := unix.PtracePeekText(t.pid, pc, text[:]); err != nil {
		return fmt.Errorf("ptrace(PTRACE_PEEKTEXT): %w", err)
	}
	patched := text
	copy(patched[:], syscallInsn[:])
	if _, err := unix.PtracePokeText(t.pid, pc, patched[:]); err != nil {
		return fmt.Errorf("ptrace(PTRACE_POKETEXT): %w", err)
	}
	for _, c := range calls {
		if err := t.call(&saved, c); err != nil {
			return err
		}
	}
	if _, err := unix.PtracePokeText(t.pid, pc, text[:]); err != nil {
		return fmt.Errorf("ptrace(PTRACE_POKETEXT): %w", err)
	}
	if err := unix.PtraceSetRegs(t.pid, &saved); err != nil {
		return fmt.Errorf("ptrace(PTRACE_SETREGS): %w", err)
	}
	return nil
}

// call makes the VM make c, from the registers it stopped with.
func (t *tracee) call(saved *unix.PtraceRegs, c syscallArgs) error {
	regs := *saved
	regs.Rax = uint64(c.nr)
	// No system call for the kernel to restart on the way back to user
	// space (gdb clears it so before it calls a function).
	regs.Orig_rax = ^uint64(0)
	a := c.args
	regs.Rdi, regs.Rsi, regs.Rdx, regs.R10, regs.R8, regs.R9 =
		uint64(a[0]), uint64(a[1]), uint64(a[2]), uint64(a[3]), uint64(a[4]), uint64(a[5])
	if err := unix.PtraceSetRegs(t.pid, &regs); err != nil {
		return fmt.Errorf("ptrace(PTRACE_SETREGS): %w", err)
	}
	if err := unix.PtraceSingleStep(t.pid); err != nil {
		return fmt.Errorf("ptrace(PTRACE_SINGLESTEP): %w", err)
	}
	ws, err := t.wait()
	if err != nil {
		return err
	}
	if !ws.Stopped() || ws.StopSignal() != unix.SIGTRAP {
		return fmt.Errorf("%s in the VM: %s", c.name, describeStatus(ws))
	}
	if err := unix.PtraceGetRegs(t.pid, &regs); err != nil {
		return fmt.Errorf("ptrace(PTRACE_GETREGS): %w", err)
	}
	if regs.Rip != saved.Rip+uint64(len(syscallInsn)) {
		return fmt.Errorf("%s in the VM: it stopped at %#x, not after the call", c.name, regs.Rip)
	}
	if r := int64(regs.Rax); r < 0 && r >= -4095 {
		return fmt.Errorf("%s in the VM: %w", c.name, unix.Errno(-r))
	}
	return nil
}
