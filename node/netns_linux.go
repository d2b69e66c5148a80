package node

import "os"

// netNamespace is the process's network namespace, as /proc names it
// ("net:[4026531992]"), or "" when it cannot be read.
func netNamespace() string {
	ns, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return ""
	}
	return ns
}
