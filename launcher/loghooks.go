package launcher

import (
	"context"
	"log/slog"
	"time"
)

// logHooks turns a launch's events into the Launcher's own log records. It
// is the first consumer of every launch's events; the records are for
// people, and code learns what happened from Hooks.
func logHooks(log *slog.Logger, graceful time.Duration) *Hooks {
	ctx := context.Background()
	vm := func(name string, pid int) []slog.Attr {
		return []slog.Attr{slog.String("vm", name), slog.Int("pid", pid)}
	}
	return &Hooks{
		Started: func(i StartedInfo) {
			log.LogAttrs(ctx, slog.LevelDebug, "vm started",
				append(vm(i.VM, i.Pid), slog.String("path", i.Path), slog.Duration("exec", i.Exec))...)
		},
		Ready: func(i ReadyInfo) {
			log.LogAttrs(ctx, slog.LevelInfo, "handshake succeeded",
				append(vm(i.VM, i.Pid), slog.String("addr", i.Addr),
					slog.Uint64("protocol_version", uint64(i.ProtocolVersion)), slog.Duration("elapsed", i.Elapsed))...)
		},
		LaunchFailed: func(err *LaunchError) {
			attrs := []slog.Attr{slog.String("vm", err.VM), slog.String("phase", err.Phase.String()), slog.String("error", err.Error())}
			if err.Pid != 0 {
				attrs = append(attrs, slog.Int("pid", err.Pid))
			}
			log.LogAttrs(ctx, slog.LevelError, "launch failed", attrs...)
		},
		StopStage: func(i StopStageInfo) {
			attrs := append(vm(i.VM, i.Pid), slog.String("reason", i.Reason.String()))
			if i.Err != nil {
				attrs = append(attrs, slog.String("error", i.Err.Error()))
			}
			switch i.Stage {
			case StageShutdown:
				log.LogAttrs(ctx, slog.LevelDebug, "calling the VM's "+legacyShutdownProcedure, attrs...)
			case StageTerm:
				level := slog.LevelDebug
				if i.Err != nil {
					level = slog.LevelWarn
				}
				log.LogAttrs(ctx, level, "sending SIGTERM", append(attrs, slog.Duration("graceful_timeout", graceful))...)
			case StageKill:
				log.LogAttrs(ctx, slog.LevelWarn, "sending SIGKILL", append(attrs, slog.Duration("graceful_timeout", graceful))...)
			}
		},
		Exited: func(i ExitInfo) {
			level := slog.LevelInfo
			if !i.Exit.Success() && i.Exit.Stage == StageNone || i.Exit.Killed() {
				level = slog.LevelWarn
			}
			log.LogAttrs(ctx, level, "vm exited", append(vm(i.VM, i.Pid), slog.String("exit", i.Exit.String()))...)
		},
		OutputDropped: func(i OutputDropInfo) {
			if i.Unread {
				log.LogAttrs(ctx, slog.LevelWarn, "vm output left unread: a process outside the VM's group holds its pipe",
					append(vm(i.VM, i.Pid), slog.String("stream", i.Stream))...)
			}
		},
	}
}
