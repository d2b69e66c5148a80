package launcher

import "sync"

// Sizes of the stderr tail kept for error reports.
const (
	tailLines     = 20
	tailLineBytes = 512
)

// tail keeps the last lines of a stream, each cut at tailLineBytes, in one
// slot per line that grows to the longest line it has held: a VM that has
// written a few short lines holds a few short slots, and a busy stream
// stops allocating once its slots have grown.
type tail struct {
	mu    sync.Mutex
	slot  [tailLines][]byte
	next  int
	count int
}

func (t *tail) add(line []byte) { t.addMarked("", line) }

// addMarked keeps line after mark, such as the name of its stream.
func (t *tail) addMarked(mark string, line []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	slot := append(t.slot[t.next][:0], mark...)
	t.slot[t.next] = append(slot, line[:min(len(line), tailLineBytes)]...)
	t.next = (t.next + 1) % tailLines
	t.count = min(t.count+1, tailLines)
}

// lines returns the kept lines, oldest first.
func (t *tail) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, t.count)
	for i := range t.count {
		j := (t.next - t.count + i + tailLines) % tailLines
		out = append(out, string(t.slot[j]))
	}
	return out
}
