package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// signals catches SIGINT and SIGTERM. The first one cancels first (a launch
// in progress is abandoned, a running VM is stopped gracefully); the second
// one cancels second, the context of the stop, so the VM is killed at once.
type signals struct {
	first  context.Context
	second context.Context
	stop   func()
}

func catchSignals(parent context.Context) *signals {
	c := make(chan os.Signal, 2)
	signal.Notify(c, os.Interrupt, syscall.SIGTERM)
	first, cancelFirst := context.WithCancelCause(parent)
	second, cancelSecond := context.WithCancelCause(context.WithoutCancel(parent))
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for _, cancel := range []context.CancelCauseFunc{cancelFirst, cancelSecond} {
			select {
			case s := <-c:
				cancel(fmt.Errorf("received %s", signalName(s)))
			case <-quit:
				return
			}
		}
	}()
	return &signals{first: first, second: second, stop: func() {
		signal.Stop(c)
		close(quit)
		<-done
		cancelFirst(nil)
		cancelSecond(nil)
	}}
}

func signalName(s os.Signal) string {
	switch s {
	case os.Interrupt:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return s.String()
}
