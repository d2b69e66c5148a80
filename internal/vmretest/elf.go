package vmretest

import (
	"debug/elf"
	"encoding/binary"
	"runtime"
)

// ForeignELF is the header of a 64-bit little-endian ELF executable for a
// machine other than this one (arm64, or riscv64 on arm64) and that
// machine's GOARCH name: enough for the kernel to refuse it with "exec
// format error", as it refuses a plugin built for another architecture,
// with no cross toolchain needed.
func ForeignELF() (header []byte, goarch string) {
	machine, goarch := elf.EM_AARCH64, "arm64"
	if runtime.GOARCH == "arm64" {
		machine, goarch = elf.EM_RISCV, "riscv64"
	}
	h := make([]byte, 64)
	copy(h, "\x7fELF")
	h[elf.EI_CLASS], h[elf.EI_DATA], h[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	le := binary.LittleEndian
	le.PutUint16(h[16:], uint16(elf.ET_EXEC))
	le.PutUint16(h[18:], uint16(machine))
	le.PutUint32(h[20:], uint32(elf.EV_CURRENT))
	le.PutUint16(h[52:], 64) // e_ehsize
	le.PutUint16(h[54:], 56) // e_phentsize
	le.PutUint16(h[58:], 64) // e_shentsize
	return h, goarch
}
