package launcher

import (
	"os"
	"strings"
)

// childEnv builds a VM's environment: the command's own Env if set, else
// the host's (all of it, or the allowed part), then extra, then engine.
func childEnv(s *settings, cmdEnv []string, engine []string) []string {
	var env []string
	switch {
	case cmdEnv != nil:
		env = append(env, cmdEnv...)
	case s.InheritEnv:
		env = os.Environ()
	default:
		for _, kv := range os.Environ() {
			if allowed(s.EnvAllowlist, kv) {
				env = append(env, kv)
			}
		}
	}
	env = append(env, s.Env...)
	return append(env, engine...) // last wins: exec dedups, keeping the last
}

func allowed(list []string, kv string) bool {
	name, _, _ := strings.Cut(kv, "=")
	for _, pattern := range list {
		if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if name == pattern {
			return true
		}
	}
	return false
}
