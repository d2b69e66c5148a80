package launcher

// A LaunchOption configures one launch.
type LaunchOption interface{ apply(*launchOptions) }

type launchOptions struct {
	name  string
	hooks *Hooks
	ready func(*Runtime)
}

type optionFunc func(*launchOptions)

func (f optionFunc) apply(o *launchOptions) { f(o) }

// WithName names the VM of this launch in logs and events, instead of
// Config.Name or the command's base name.
func WithName(name string) LaunchOption {
	return optionFunc(func(o *launchOptions) { o.name = name })
}

// WithHooks adds hooks that see the events of this launch only; they are
// called after those of Config.Hooks.
func WithHooks(h *Hooks) LaunchOption {
	return optionFunc(func(o *launchOptions) { o.hooks = h })
}

// WithReady calls f with this launch's Runtime once its handshake has
// completed, on the goroutine of Launch, before the Ready hooks: whoever
// learns of the VM from Ready finds that f has recorded it (a supervisor's
// state, for example). f must not block.
func WithReady(f func(*Runtime)) LaunchOption {
	return optionFunc(func(o *launchOptions) { o.ready = f })
}
