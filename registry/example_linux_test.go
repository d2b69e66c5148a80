package registry_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/registry"
)

// A pinned VM runs the bytes that were checked, even once its file is
// replaced; a reload refuses the new bytes.
func Example_pins() {
	dir, err := os.MkdirTemp("", "plugins")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	vm := []byte("#!/bin/sh\necho the pinned VM\n")
	os.WriteFile(filepath.Join(dir, "examplevm"), vm, 0o755)
	pins := filepath.Join(dir, ".pins.sha256") // as `sha256sum examplevm` prints it
	os.WriteFile(pins, fmt.Appendf(nil, "%x  examplevm\n", sha256.Sum256(vm)), 0o644)

	reg, report, err := registry.Load(registry.Config{Dir: dir, Pins: pins, RequirePins: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer reg.Close()
	fmt.Println("problems:", report.Err())

	os.WriteFile(filepath.Join(dir, "examplevm"), []byte("#!/bin/sh\necho another VM\n"), 0o755)
	v, _ := reg.Lookup("examplevm")
	out, _ := v.Command().Output()
	fmt.Print(string(out))

	report, _ = reg.Reload()
	for _, p := range report.Failed {
		fmt.Println(p.Entry+":", p.Kind, errors.Is(p, vmre.ErrPinMismatch))
	}
	// Output:
	// problems: <nil>
	// the pinned VM
	// examplevm: pin mismatch true
}
