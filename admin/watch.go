package admin

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/supervise"
)

// watcherBuffer is how many changes a watcher may fall behind before its
// stream is ended: a watcher never slows the supervisor down.
const watcherBuffer = 1024

// watcher is one WatchVMs stream.
type watcher struct {
	changes  chan supervise.VM
	overflow chan struct{} // closed when changes was full
}

// StateChanged tells the watchers of a change of a VM's state. It never
// blocks: a watcher that has fallen watcherBuffer changes behind is ended.
// Join it into the supervisor's hooks.
func (s *Service) StateChanged(vm supervise.VM) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers {
		select {
		case w.changes <- vm:
		default:
			close(w.overflow)
			delete(s.watchers, w)
		}
	}
}

func (h handler) WatchVMs(ctx context.Context, _ *connect.Request[adminv1.WatchVMsRequest], stream *connect.ServerStream[adminv1.WatchVMsResponse]) error {
	s := h.s
	w := &watcher{changes: make(chan supervise.VM, watcherBuffer), overflow: make(chan struct{})}
	s.mu.Lock()
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
	}()
	// The current state first; a change made meanwhile comes again after.
	for _, vm := range s.sup.List() {
		if err := stream.Send(&adminv1.WatchVMsResponse{Vm: s.View(vm)}); err != nil {
			return err
		}
	}
	for {
		select {
		case vm := <-w.changes:
			if err := stream.Send(&adminv1.WatchVMsResponse{Vm: s.View(vm)}); err != nil {
				return err
			}
		case <-w.overflow:
			// Send what is queued, then end: the watcher may watch again.
			for {
				select {
				case vm := <-w.changes:
					if err := stream.Send(&adminv1.WatchVMsResponse{Vm: s.View(vm)}); err != nil {
						return err
					}
				default:
					return connect.NewError(connect.CodeResourceExhausted,
						errors.New("this watcher fell too far behind the VMs' changes; watch again"))
				}
			}
		case <-ctx.Done():
			return nil
		}
	}
}
