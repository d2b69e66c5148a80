package launcher

import "github.com/vmre/vmre"

// A LaunchOption configures one launch.
type LaunchOption interface{ apply(*launchOptions) }

type launchOptions struct {
	name    string
	hooks   *Hooks
	tracker vmre.Tracker
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

// WithTracker makes t track this launch's Runtime once its handshake has
// completed, after Config.Manager and before the Ready hooks: whoever
// learns of the VM from Ready finds it tracked.
func WithTracker(t vmre.Tracker) LaunchOption {
	return optionFunc(func(o *launchOptions) { o.tracker = t })
}
