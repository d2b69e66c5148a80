package client

// WithWarmUpDone makes Serve tell done of its warm-up's end, on the
// warm-up's goroutine: its error, or nil when both requests were answered.
func WithWarmUpDone(done func(error)) Option {
	return optionFunc(func(o *options) { o.onWarmUp = done })
}
