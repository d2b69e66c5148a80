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
	changes  chan change
	overflow chan struct{} // closed when changes was full
}

// change is what a watcher is told: a VM's new state, or that it left.
type change struct {
	vm   supervise.VM
	gone bool
}

// StateChanged tells the watchers of a change of a VM's state. It never
// blocks: a watcher that has fallen watcherBuffer changes behind is ended.
// Join it into the supervisor's hooks (supervise.Hooks.State).
func (s *Service) StateChanged(vm supervise.VM) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last[vm.Name] = vm
	s.tell(change{vm: vm})
}

// Removed tells the watchers that the VM name left the node, with its last
// state: ListVMs no longer lists it. Join it into the supervisor's hooks
// (supervise.Hooks.Removed), which call it after the VM's last State.
func (s *Service) Removed(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	last, ok := s.last[name]
	if !ok {
		last = supervise.VM{Name: name}
	}
	delete(s.last, name)
	s.tell(change{vm: last, gone: true})
}

// tell sends c to every watcher, under mu.
func (s *Service) tell(c change) {
	for w := range s.watchers {
		select {
		case w.changes <- c:
		default:
			close(w.overflow)
			delete(s.watchers, w)
		}
	}
}

// response is the stream message of c.
func (s *Service) response(c change) *adminv1.WatchVMsResponse {
	return &adminv1.WatchVMsResponse{Vm: s.View(c.vm), Gone: c.gone}
}

func (h handler) WatchVMs(ctx context.Context, _ *connect.Request[adminv1.WatchVMsRequest], stream *connect.ServerStream[adminv1.WatchVMsResponse]) error {
	s := h.s
	w := &watcher{changes: make(chan change, watcherBuffer), overflow: make(chan struct{})}
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
		if err := stream.Send(s.response(change{vm: vm})); err != nil {
			return err
		}
	}
	for {
		select {
		case c := <-w.changes:
			if err := stream.Send(s.response(c)); err != nil {
				return err
			}
		case <-w.overflow:
			// Send what is queued, then end: the watcher may watch again.
			for {
				select {
				case c := <-w.changes:
					if err := stream.Send(s.response(c)); err != nil {
						return err
					}
				default:
					return connect.NewError(connect.CodeResourceExhausted,
						errors.New("this watcher fell too far behind the VMs' changes; watch again"))
				}
			}
		case <-ctx.Done():
			return nil
		case <-s.closing:
			return nil
		}
	}
}
