//go:build !linux

package launcher

import (
	"errors"
	"log/slog"
)

// Subreaper stands for Linux's child subreaper, which other systems lack
// here.
type Subreaper struct{}

// StartSubreaper fails: only Linux has PR_SET_CHILD_SUBREAPER. The stop
// of a VM there reaches its process group alone.
func StartSubreaper(*slog.Logger) (*Subreaper, error) {
	return nil, errors.New("a child subreaper needs Linux (PR_SET_CHILD_SUBREAPER)")
}

// Close does nothing.
func (*Subreaper) Close() error { return nil }
