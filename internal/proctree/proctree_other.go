//go:build !linux

package proctree

import (
	"syscall"
	"time"
)

// ReadStat returns ErrUnsupported.
func ReadStat(int) (Stat, error) { return Stat{}, ErrUnsupported }

// Children returns nothing.
func Children(int) []int { return nil }

// All returns nothing.
func All() []Stat { return nil }

// Descendants returns nothing.
func Descendants([]Stat, ...int) []Stat { return nil }

// Walk visits pid alone.
func Walk(pid int, visit func(pid int) bool) { visit(pid) }

// HasEnv returns false.
func HasEnv(int, string) bool { return false }

// Signal returns ErrUnsupported.
func Signal(Stat, syscall.Signal) error { return ErrUnsupported }

// WaitAny returns at once.
func WaitAny([]Stat, time.Duration) {}
