//go:build !linux

package node

// netNamespace is "": only Linux has network namespaces.
func netNamespace() string { return "" }
