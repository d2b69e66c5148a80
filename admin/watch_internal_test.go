package admin

import (
	"testing"

	"github.com/vmre/vmre/supervise"
)

// A watcher that falls watcherBuffer changes behind is let go, and told so,
// without StateChanged ever waiting for it; the others keep every change.
func TestSlowWatcherIsLetGo(t *testing.T) {
	s := &Service{watchers: map[*watcher]struct{}{}, last: map[string]supervise.VM{}}
	slow := &watcher{changes: make(chan change, watcherBuffer), overflow: make(chan struct{})}
	fast := &watcher{changes: make(chan change, watcherBuffer), overflow: make(chan struct{})}
	s.watchers[slow], s.watchers[fast] = struct{}{}, struct{}{}

	const changes = watcherBuffer + 10
	got := 0
	for i := range changes { // on this goroutine: a blocking send would hang the test
		s.StateChanged(supervise.VM{Name: "vm", Launches: i})
		if c := <-fast.changes; c.vm.Launches == i { // the fast one reads each change as it comes
			got++
		}
	}

	select {
	case <-slow.overflow:
	default:
		t.Fatal("the slow watcher was not told it fell behind")
	}
	if _, ok := s.watchers[slow]; ok {
		t.Error("the slow watcher is still registered")
	}
	if _, ok := s.watchers[fast]; !ok {
		t.Error("the watcher that kept up was let go")
	}
	if len(slow.changes) != watcherBuffer {
		t.Errorf("the slow watcher holds %d changes; want the %d it had room for", len(slow.changes), watcherBuffer)
	}
	if got != changes {
		t.Errorf("the watcher that kept up got %d of the %d changes in order", got, changes)
	}
}
