package sandbox_test

import (
	"fmt"

	"github.com/vmre/vmre/sandbox"
)

// A policy file's VM entry is read over its default key by key.
func ExampleParseFile() {
	f, err := sandbox.ParseFile([]byte(`{
	  "default": {"limits": {"open_files": 4096}},
	  "vms": {"timestampvm": {"files": {"read": ["/opt/timestamp"]}, "network": {"connect": [9650]}}}
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	p := f.Policy("tsvm", "timestampvm") // an alias, then the VM's ID
	fmt.Println(p.Files.Read, p.Network.Connect, p.Limits.OpenFiles)
	fmt.Println(f.Policy("othervm").Files.Read, f.Policy("othervm").Limits.OpenFiles)

	_, err = sandbox.ParseFile([]byte(`{"vms": {"timestampvm": {"network": {"conect": [9650]}}}}`))
	fmt.Println(err)
	// Output:
	// [/opt/timestamp] [9650] 4096
	// [] 4096
	// invalid config: vms.timestampvm.network: unknown key "conect" (known: bind, connect, unrestricted)
}
