//go:build !linux

package launcher

// exitWatch is not needed where the launcher reaps with cmd.Wait.
type exitWatch struct{}

func (*exitWatch) close() {}
