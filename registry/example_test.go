//go:build unix

package registry_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/vmre/vmre/registry"
)

// A directory with a VM, its aliases file (a dotfile, so not a VM itself)
// and a file that is no VM.
func ExampleLoad() {
	dir, err := os.MkdirTemp("", "plugins")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "timestampvm"), []byte("#!/bin/sh\necho timestamp VM \"$@\"\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "README.txt"), []byte("not a VM\n"), 0o644)
	aliases := filepath.Join(dir, ".aliases.json")
	os.WriteFile(aliases, []byte(`{"timestampvm": ["tsvm"]}`), 0o644)

	reg, report, err := registry.Load(registry.Config{Dir: dir, Aliases: aliases})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer reg.Close()
	for _, vm := range report.Added {
		fmt.Println("added", vm.ID(), vm.Aliases())
	}
	for _, p := range report.Failed {
		fmt.Println("failed", p.Entry+":", p.Kind)
	}

	vm, _ := reg.Lookup("tsvm")
	out, err := vm.Command("--version").Output() // a launcher would start it instead
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(string(out))
	// Output:
	// added timestampvm [tsvm]
	// failed README.txt: not executable
	// timestamp VM --version
}

func ExampleRegistry_Reload() {
	dir, err := os.MkdirTemp("", "plugins")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "alpha"), []byte("#!/bin/sh\necho alpha\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "beta"), []byte("#!/bin/sh\necho beta\n"), 0o755)
	reg, _, err := registry.Load(registry.Config{Dir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer reg.Close()

	os.WriteFile(filepath.Join(dir, "gamma"), []byte("#!/bin/sh\necho gamma\n"), 0o755) // new
	os.WriteFile(filepath.Join(dir, "beta"), []byte("#!/bin/sh\necho beta 2\n"), 0o755) // changed
	os.Remove(filepath.Join(dir, "alpha"))                                              // removed
	report, err := reg.Reload()
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, vm := range report.Added {
		fmt.Println("added", vm.ID())
	}
	for _, c := range report.Changed {
		fmt.Println("changed", c.Old.ID(), c.Old.Size(), "bytes ->", c.New.Size(), "bytes")
	}
	for _, vm := range report.Removed {
		fmt.Println("removed", vm.ID())
	}
	fmt.Println("unchanged", len(report.Unchanged))
	// Output:
	// added beta
	// added gamma
	// changed beta 20 bytes -> 22 bytes
	// removed alpha
	// unchanged 0
}
