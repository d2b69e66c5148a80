package registry

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/internal/safetext"
)

// Config configures a Registry. Every zero value means the documented
// default; Load never writes into it.
type Config struct {
	// Dir is the plugin directory (required).
	Dir string
	// Aliases is the path of an aliases file in AvalancheGo's format,
	// {"<vmID>": ["alias", ...]} (default: none).
	Aliases string
	// Pins is the path of a pins file in sha256sum's format, "HEX  NAME"
	// per line (default: none).
	Pins string
	// RequirePins refuses every file that has no pin. It needs Pins.
	RequirePins bool
	// Logger gets a debug record for each skipped entry (a directory or a
	// dotfile) (default: discard).
	Logger *slog.Logger
}

// Registry holds the VMs of a plugin directory. It runs nothing: it turns
// files into VMs whose Command a launcher starts. It is safe for concurrent
// use.
type Registry struct {
	cfg    Config // Dir absolute, Logger set
	now    func() time.Time
	hashed atomic.Int64 // files read and hashed by loads, for tests
	bg     digester     // takes unpinned VMs' digests (TakeDigest)

	reloadMu sync.Mutex // one Reload at a time; Close waits for it

	mu      sync.RWMutex
	byID    map[string]*VM
	byName  map[string]*VM    // IDs and aliases
	retired []*VM             // VMs that left the registry, closed at Close
	pins    map[string]Digest // the pins of the last load, by file name
	closed  bool
}

// Load reads the plugin directory, the aliases file and the pins file, and
// returns the registry of the VMs that loaded. It reads no unpinned file:
// their digests are not needed to launch them (VM.Digest); a pinned file is
// hashed while its sealed copy is made, several files at once, up to the
// number of CPUs. An entry that cannot load is
// in the report's Failed and the others load regardless; the error is only
// for a bad Config or a directory that cannot be listed.
func Load(cfg Config) (*Registry, Report, error) {
	if cfg.Dir == "" {
		return nil, Report{}, fmt.Errorf("%w: no plugin directory given", vmre.ErrInvalidConfig)
	}
	if cfg.RequirePins && cfg.Pins == "" {
		return nil, Report{}, fmt.Errorf("%w: pins are required but no pins file is given", vmre.ErrInvalidConfig)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, Report{}, fmt.Errorf("plugin directory %s: %w", cfg.Dir, err)
	}
	cfg.Dir = dir
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return loadWith(cfg, time.Now)
}

// loadWith is Load with the clock that dates the files' identities.
func loadWith(cfg Config, now func() time.Time) (*Registry, Report, error) {
	r := &Registry{cfg: cfg, now: now}
	byID, pins, report, err := r.load(nil)
	if err != nil {
		return nil, Report{}, err
	}
	r.install(byID, pins)
	return r, report, nil
}

// Dir is the plugin directory, as an absolute path.
func (r *Registry) Dir() string { return r.cfg.Dir }

// VMs returns the loaded VMs, sorted by ID.
func (r *Registry) VMs() []*VM {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return sortedVMs(r.byID)
}

// Lookup returns the VM with the ID or alias name.
func (r *Registry) Lookup(name string) (*VM, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	v, ok := r.byName[name]
	return v, ok
}

// Pin returns the digest the pins file gives the file name (a file of the
// directory, such as VM.File), as the last load read it, and whether it
// gives one. With no pins file, or one that could not be read, no file
// has a pin.
func (r *Registry) Pin(file string) (Digest, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	d, ok := r.pins[file]
	return d, ok
}

// Reload reads the directory, the aliases file and the pins file again. A
// VM whose file and pin are unchanged keeps its *VM (and its sealed copy:
// it is not copied again). As git's index does, a file whose identity
// (device, inode, size, modification and change times) is the one it had
// is not read again: a pinned file is hashed again only when its identity
// changed, or was taken less than two seconds after the file was written
// (its times cannot prove it then); an unpinned file, never hashed at load,
// is a new version when its identity changed, even if its bytes did not. A changed VM is added as a new version: a
// new *VM in Added, paired with the one it replaces in Changed. VMs that
// leave the registry (changed, removed, or failing now) stay usable, so
// that a running VM can still be restarted from the bytes it was started
// from, until they are closed: by the caller when it launches them no more,
// or by the Registry's Close.
//
// On an error (the directory cannot be listed) the registry is unchanged.
func (r *Registry) Reload() (Report, error) {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	r.mu.RLock()
	closed, prev := r.closed, r.byID
	r.mu.RUnlock()
	if closed {
		return Report{}, fmt.Errorf("reload the plugin directory: the registry is closed (%w)", fs.ErrClosed)
	}
	byID, pins, report, err := r.load(prev)
	if err != nil {
		return Report{}, err
	}
	r.install(byID, pins)
	return report, nil
}

// install makes byID the registry's VMs and pins its pins, and retires
// the VMs it drops.
func (r *Registry) install(byID map[string]*VM, pins map[string]Digest) {
	byName := make(map[string]*VM, len(byID))
	for id, v := range byID {
		byName[id] = v
	}
	for _, v := range byID {
		for _, a := range v.Aliases() {
			byName[a] = v
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	kept := r.retired[:0]
	for _, v := range r.retired {
		if !v.isClosed() {
			kept = append(kept, v)
		}
	}
	for id, v := range r.byID {
		if byID[id] != v && !v.isClosed() {
			kept = append(kept, v)
		}
	}
	r.retired = kept
	r.byID, r.byName, r.pins = byID, byName, pins
}

// Close closes every VM the registry loaded, retired ones included, and
// makes Reload fail. Processes started from them keep running. Close is
// idempotent.
func (r *Registry) Close() error {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.bg.close()
	var errs []error
	for _, v := range slices.Concat(sortedVMs(r.byID), r.retired) {
		if err := v.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close VM %s: %w", v.id, err))
		}
	}
	r.retired = nil
	return errors.Join(errs...)
}

// load reads everything and returns the VMs by ID, the pins by file name
// and the report against prev, the VMs loaded before (nil for the first
// load).
func (r *Registry) load(prev map[string]*VM) (map[string]*VM, map[string]Digest, Report, error) {
	aliases, problems := readAliases(r.cfg.Aliases)
	pins, pinProblems := readPins(r.cfg.Pins)
	problems = append(problems, pinProblems...)
	l, err := scanDir(r.cfg.Dir, aliases, r.cfg.Logger)
	if err != nil {
		return nil, nil, Report{}, err
	}
	problems = append(problems, l.problems...)

	// Every ID claimed by an entry, good or not: an ID no entry claims any
	// more is removed; an unknown VM of the aliases file is one that no file
	// claims.
	claimed := map[string]bool{}
	for _, p := range l.problems {
		if p.ID != "" {
			claimed[p.ID] = true
		}
	}
	byIDFiles := map[string][]candidate{}
	for _, c := range l.candidates {
		claimed[c.id] = true
		byIDFiles[c.id] = append(byIDFiles[c.id], c)
	}
	var remotes []Remote
	for _, c := range l.remotes {
		if files, ok := byIDFiles[c.id]; ok {
			problems = append(problems, &Problem{Entry: c.file, ID: c.id, Kind: kindNameCollision,
				Err: fmt.Errorf("%w: %s declares a remote VM %s, and %s is a VM of this directory: rename one", vmre.ErrInvalidConfig, c.file, c.id, files[0].file)})
			continue
		}
		rem, p := readRemote(c)
		if p != nil {
			problems = append(problems, p)
			continue
		}
		remotes = append(remotes, rem)
	}
	for _, id := range slices.Sorted(maps.Keys(aliases.listed)) {
		if !claimed[id] {
			problems = append(problems, &Problem{Entry: id, ID: id, Kind: kindUnknownVM,
				Err: fmt.Errorf("%w: the aliases file names VM %s (aliases %s), which has no file in %s; its aliases name nothing",
					vmre.ErrInvalidConfig, id, strings.Join(aliases.listed[id], ", "), r.cfg.Dir)})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(pins.byName)) {
		if !l.names[name] {
			problems = append(problems, &Problem{Entry: name, Kind: kindMissingFile,
				Err: fmt.Errorf("the pins file pins %s (line %d), which is not in %s: put the file there or remove its pin: %w",
					name, pins.byName[name].line, r.cfg.Dir, fs.ErrNotExist)})
		}
	}

	byID := map[string]*VM{}
	var report Report
	var jobs []loadJob
	for _, id := range slices.Sorted(maps.Keys(byIDFiles)) {
		files := byIDFiles[id]
		if len(files) > 1 {
			names := make([]string, len(files))
			for i, c := range files {
				names[i] = c.file
			}
			for _, c := range files {
				problems = append(problems, &Problem{Entry: c.file, ID: id, Kind: kindNameCollision,
					Err: fmt.Errorf("%w: files %s name the same VM %s; none of them loads: keep one", vmre.ErrInvalidConfig, strings.Join(names, ", "), id)})
			}
			continue
		}
		jobs = append(jobs, loadJob{c: files[0], old: prev[id]})
	}
	r.loadFiles(jobs, pins)
	for _, j := range jobs {
		if j.p != nil {
			problems = append(problems, j.p)
			continue
		}
		id, v := j.c.id, j.v
		v.setAliases(aliases.aliasesOf(id))
		byID[id] = v
		switch {
		case j.unchanged:
			report.Unchanged = append(report.Unchanged, v)
		case j.old != nil:
			report.Added = append(report.Added, v)
			report.Changed = append(report.Changed, Change{Old: j.old, New: v})
		default:
			report.Added = append(report.Added, v)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(prev)) {
		if !claimed[id] {
			report.Removed = append(report.Removed, prev[id])
		}
	}
	for _, p := range problems {
		p.Entry = safetext.Terminal(p.Entry) // a pin may name any bytes
	}
	slices.SortStableFunc(problems, func(a, b *Problem) int {
		if c := strings.Compare(a.Entry, b.Entry); c != 0 {
			return c
		}
		return int(a.Kind - b.Kind)
	})
	report.Failed = problems
	report.Remotes = remotes
	pinned := make(map[string]Digest, len(pins.byName))
	for name, p := range pins.byName {
		pinned[name] = p.digest
	}
	return byID, pinned, report, nil
}

// loadJob is a file to load, and the outcome.
type loadJob struct {
	c   candidate
	old *VM // the VM of the same ID loaded before, or nil

	v         *VM
	unchanged bool
	p         *Problem
}

// loadFiles loads the jobs' files, as many at once as there are CPUs: the
// pinned ones are read, hashed and copied, which takes time in proportion
// to their size.
func (r *Registry) loadFiles(jobs []loadJob, pins pinSet) {
	workers := min(runtime.GOMAXPROCS(0), len(jobs))
	next := make(chan *loadJob)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var buf []byte // made when a file is read
			for j := range next {
				j.v, j.unchanged, j.p = r.loadFile(j.c, pins, j.old, &buf)
			}
		})
	}
	for i := range jobs {
		next <- &jobs[i]
	}
	close(next)
	wg.Wait()
}

// loadFile makes the VM of a candidate file, or says why it cannot load.
// When old, the VM of the same ID loaded before, still holds (same file,
// same bytes, same pin), it returns old itself with unchanged set. buf is
// the worker's copy buffer, made on first use.
func (r *Registry) loadFile(c candidate, pins pinSet, old *VM, buf *[]byte) (v *VM, unchanged bool, p *Problem) {
	fail := func(kind Kind, err error) (*VM, bool, *Problem) {
		return nil, false, &Problem{Entry: c.file, ID: c.id, Kind: kind, Err: err}
	}
	pn, pinned := pins.byName[c.file]
	f, err := openFile(c.path)
	if err != nil {
		return fail(kindUnreadable, fmt.Errorf("open: %w", err))
	}
	defer f.Close()
	// The entry was checked by path; check what was opened.
	now := r.now()
	info, err := f.Stat()
	if err != nil {
		return fail(kindUnreadable, fmt.Errorf("stat: %w", err))
	}
	if p := checkMode(c.file, c.id, info); p != nil {
		return nil, false, p
	}
	ident := identity{id: fileIDOf(info), at: now}
	hash := func() (Digest, error) {
		if *buf == nil {
			*buf = make([]byte, copyBufferSize)
		}
		r.hashed.Add(1)
		d, _, err := hashFile(f, *buf)
		return d, err
	}

	var oldDigest Digest
	var oldKnown bool
	var oldIdent identity
	reusable := old != nil && old.file == c.file && old.pinned == pinned && !old.isClosed()
	if reusable {
		oldDigest, oldKnown, oldIdent = old.digestState()
	}
	if !pinned {
		switch {
		case pins.err != nil || r.cfg.RequirePins:
			// Refused: the digest tells the operator what to pin.
			d, err := hash()
			if err != nil {
				return fail(kindUnreadable, fmt.Errorf("read: %w", err))
			}
			if pins.err != nil {
				return fail(kindUnpinned, fmt.Errorf("%w: the file cannot be checked, its sha256 is %s: %w", vmre.ErrInvalidConfig, d, pins.err))
			}
			return fail(kindUnpinned, fmt.Errorf("%w: pins are required and %s has none; its sha256 is %s: if it is the file to run, add the line \"%s  %s\" to the pins file",
				vmre.ErrInvalidConfig, c.file, d, d, c.file))
		case reusable && oldIdent.id == ident.id && oldIdent.id != (fileID{}):
			// The same file. Its identity is trusted even when it was taken
			// within racyWindow of the file's writing: a file rewritten in
			// place within a tick, to the same size, keeps it, but an
			// unpinned VM runs whatever its file holds at each exec, and
			// its digest, taken from a process, says what that process runs
			// (a running executable cannot be written: ETXTBSY).
			old.setIdentity(ident)
			return old, true, nil
		}
		// Not hashed: the digest is informational (Registry.TakeDigest).
		return &VM{id: c.id, file: c.file, path: c.path, size: info.Size(), ident: ident}, false, nil
	}

	if reusable && oldKnown && oldDigest == pn.digest && oldIdent.proves(ident.id) {
		old.setIdentity(ident)
		return old, true, nil
	}
	seal := canSeal
	if !seal || reusable {
		// Hash the file: enough for an unsealed VM, and for a sealed one
		// whose bytes have not changed.
		d, err := hash()
		if err != nil {
			return fail(kindUnreadable, fmt.Errorf("read: %w", err))
		}
		switch {
		case d != pn.digest:
			return fail(kindPinMismatch, &PinMismatchError{File: c.file, Pinned: pn.digest, Actual: d})
		case reusable && oldKnown && d == oldDigest:
			old.setIdentity(ident)
			return old, true, nil
		case !seal:
			return &VM{id: c.id, file: c.file, path: c.path, digest: d, digestKnown: true, size: info.Size(), pinned: true, ident: ident}, false, nil
		}
		// A changed pinned file: copy it from the start. The digest that
		// counts is the copy's.
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fail(kindUnreadable, fmt.Errorf("seek: %w", err))
		}
	}
	if *buf == nil {
		*buf = make([]byte, copyBufferSize)
	}
	r.hashed.Add(1)
	img, d, size, err := sealFile(f, c.id, *buf)
	if err != nil {
		return fail(kindSeal, fmt.Errorf("make a sealed copy, which a pinned VM runs from: %w", err))
	}
	if d != pn.digest {
		img.close()
		return fail(kindPinMismatch, &PinMismatchError{File: c.file, Pinned: pn.digest, Actual: d})
	}
	return &VM{id: c.id, file: c.file, path: c.path, digest: d, digestKnown: true, size: size, pinned: true, img: img, ident: ident}, false, nil
}

func sortedVMs(byID map[string]*VM) []*VM {
	out := make([]*VM, 0, len(byID))
	for _, id := range slices.Sorted(maps.Keys(byID)) {
		out = append(out, byID[id])
	}
	return out
}
