package launcher

import "sync"

// Sizes of the stderr tail kept for error reports.
const (
	tailLines     = 20
	tailLineBytes = 512
)

// tail keeps the last lines of a stream in fixed storage: adding a line
// never allocates.
type tail struct {
	mu    sync.Mutex
	buf   [tailLines][tailLineBytes]byte
	size  [tailLines]int
	next  int
	count int
}

func (t *tail) add(line []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.size[t.next] = copy(t.buf[t.next][:], line)
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
		out = append(out, string(t.buf[j][:t.size[j]]))
	}
	return out
}
