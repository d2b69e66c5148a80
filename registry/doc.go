// Package registry turns a plugin directory into VMs: their names, their
// files, their digests, and the commands that launch them. It runs nothing;
// a launcher starts the commands, a supervisor decides when.
//
//	reg, report, err := registry.Load(registry.Config{
//		Dir:     "/var/lib/node/plugins",
//		Aliases: "/etc/node/aliases.json", // {"<vmID>": ["alias", ...]}
//		Pins:    "/etc/node/pins.sha256",  // sha256sum's "HEX  NAME" lines
//	})
//	if err != nil { ... }            // no directory to read, or a bad Config
//	defer reg.Close()
//	for _, p := range report.Failed { ... } // refused entries; the others loaded
//	l, _ := launcher.New(launcher.Config{Logger: logger})
//	for _, vm := range reg.VMs() {
//		rt, err := l.Launch(ctx, vm.Command(), launcher.WithName(vm.ID()))
//		...
//	}
//
// # The directory
//
// Each regular executable file of the directory is a VM. Its ID is its name
// less an extension (".exe", or any other), unless that name is an alias in
// the aliases file: then it is the VM the alias names. This is AvalancheGo's
// convention, so a --plugin-dir of AvalancheGo loads as it is. Directories
// and dotfiles are skipped (a debug record each). Any other entry that
// cannot load is a Problem with a Kind and an error that unwraps to its
// cause; it is skipped and the other entries load. AvalancheGo, by
// contrast, refuses to start on one bad file.
//
// # Digests
//
// A load reads no unpinned file: a launch does not wait for a digest it
// does not need, and a directory of large plugins loads in the time it takes
// to list and stat it. An unpinned VM's digest is informational:
// Registry.TakeDigest takes it once the VM runs, in the background, from
// the executable of its process (/proc/PID/exe on Linux: the bytes that
// run, whatever happened to the file since), and VM.DigestKnown tells
// whether it has been taken. A "#!" script runs as its interpreter, whose
// digest is not the VM's: a script's digest is never taken that way.
//
// A pinned VM's digest is known from its load: its file is hashed while its
// sealed copy is made, several files at once, up to the number of CPUs.
//
// A reload reads no file whose identity (device, inode, size, modification
// and change times), as git's index keeps it, is the one it had: such a
// file is unchanged. Its times must be older than the moment that identity
// was taken by two seconds, the coarsest clock of the file systems' time
// stamps: otherwise a file written again within a tick could keep them, and
// a pinned file is hashed again to be sure. An unpinned file is never read:
// one whose identity changed is a new version (Report.Changed), even if only
// its times did, and one whose identity did not is unchanged.
//
// # Pins
//
// A pins file lists SHA-256 digests as sha256sum prints them. A VM whose
// file does not match its pin is refused with a *PinMismatchError that
// carries both digests; a pin naming no file is a problem too, and with
// Config.RequirePins so is a file with no pin.
//
// On Linux a pinned file is copied into a memfd while it is hashed, at
// load, and the memfd is sealed (no write, grow, shrink or further seal).
// VM.Command execs that memfd, so the bytes checked are the bytes run:
// replacing the file afterwards, by a rename over it or a rewrite in place,
// changes nothing until a Reload, which refuses the new bytes unless the
// pin changes too. The copy costs as much memory as the file (shmem pages,
// shared by every process started from it) for as long as the VM is open;
// every launch and restart reuses it. VM.Close, or Registry.Close for all,
// releases it. A pinned file is only what the kernel execs: the
// interpreter of a "#!" script and the shared libraries of a dynamically
// linked binary are not covered. A VM run from a memfd finds
// "/memfd:vmre:ID" as os.Executable; /proc/self/exe still reads its bytes.
//
// Other platforms have no sealed copies: a pinned file is hashed again by
// each VM.Command, and a file replaced between that check and the exec
// runs unchecked.
//
// # Reload
//
// Registry.Reload reads everything again and reports, as AvalancheGo's
// admin.loadVMs does, the VMs added and the entries that failed, and beyond
// it the VMs unchanged, changed (a new version: added, and paired with the
// VM it replaces) and removed. The registry stops nothing: a removed or
// replaced VM leaves the registry but stays usable until it is closed, so
// that a supervisor can restart a running VM from the bytes it started
// from, or move it to the new version, as it decides.
package registry
