package launcher

import (
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
)

// OutputStat counts the lines of one stream of a VM's output at one level,
// across every run of the VM's name under a Launcher.
type OutputStat struct {
	VM     string
	Stream string // "stdout" or "stderr"
	Level  string // "debug", "info", "warn" or "error"
	Lines  uint64
}

// outputLevels are the buckets of OutputStat.Level: below info, below warn,
// below error, error and above.
var outputLevels = [...]string{"debug", "info", "warn", "error"}

// levelCounts counts the lines of one stream by level bucket.
type levelCounts [len(outputLevels)]atomic.Uint64

func (c *levelCounts) add(l slog.Level) {
	i := 3
	switch {
	case l < slog.LevelInfo:
		i = 0
	case l < slog.LevelWarn:
		i = 1
	case l < slog.LevelError:
		i = 2
	}
	c[i].Add(1)
}

// outputCounts are the counts of one VM name, shared by its runs.
type outputCounts struct{ stdout, stderr levelCounts }

// outputs holds the counts of a Launcher's VMs by name.
type outputs struct {
	mu     sync.Mutex
	byName map[string]*outputCounts
}

// of returns the counts of the VM name, made on first use.
func (o *outputs) of(name string) *outputCounts {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.byName == nil {
		o.byName = make(map[string]*outputCounts)
	}
	c := o.byName[name]
	if c == nil {
		c = new(outputCounts)
		o.byName[name] = c
	}
	return c
}

// OutputStats counts the lines of every VM the Launcher has launched, by
// name, stream and level, sorted: a VM's counts go on across its restarts
// under one name, so they only grow. Counting costs an atomic add per line.
func (l *Launcher) OutputStats() []OutputStat {
	l.outputs.mu.Lock()
	names := make([]string, 0, len(l.outputs.byName))
	for name := range l.outputs.byName {
		names = append(names, name)
	}
	counts := make([]*outputCounts, len(names))
	slices.Sort(names)
	for i, name := range names {
		counts[i] = l.outputs.byName[name]
	}
	l.outputs.mu.Unlock()
	out := make([]OutputStat, 0, len(names)*2*len(outputLevels))
	for i, name := range names {
		for _, s := range []struct {
			name string
			c    *levelCounts
		}{{"stdout", &counts[i].stdout}, {"stderr", &counts[i].stderr}} {
			for j, level := range outputLevels {
				out = append(out, OutputStat{VM: name, Stream: s.name, Level: level, Lines: s.c[j].Load()})
			}
		}
	}
	return out
}
