package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmre/vmre"
)

// adminFlags are the flags of run and node that guard the admin service.
type adminFlags struct {
	tokenFile    string
	metricsToken bool
	strictPerms  bool
}

func (f *adminFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.tokenFile, "admin-token-file", "",
		"a `file` holding the token that admin calls (vmre ps, stop, start, restart, logs) must send as Authorization: Bearer; "+
			"required to listen beyond loopback")
	fs.BoolVar(&f.metricsToken, "metrics-token", false, "require the admin token on GET /metrics too")
	fs.BoolVar(&f.strictPerms, "strict-token-perms", false,
		"refuse an --admin-token-file that its group or others may read or write (without it: a warning, as ssh gives for a key)")
}

// tokenPermsProblem says what is wrong with a token file that its group
// or others may read or write, or "".
func tokenPermsProblem(path string) string {
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm()&0o077 == 0 {
		return ""
	}
	return fmt.Sprintf("the admin token file %s may be read by others (mode %s): chmod 600 %s", path, st.Mode().Perm(), path)
}

// token reads the token file, and refuses a listen address beyond
// loopback without one, before anything binds. A token file others may
// read is logged, or refused with --strict-token-perms.
func (f *adminFlags) token(listen string, log *slog.Logger) (string, error) {
	if f.metricsToken && f.tokenFile == "" {
		return "", fmt.Errorf("%w: --metrics-token needs --admin-token-file", vmre.ErrInvalidConfig)
	}
	if f.tokenFile == "" {
		if !listensOnLoopback(listen) {
			return "", fmt.Errorf("%w: --listen %s reaches beyond loopback, where anyone could stop the VMs: "+
				"give --admin-token-file FILE (a token of 32 random bytes or more: head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE), "+
				"or listen on 127.0.0.1", vmre.ErrInvalidConfig, listen)
		}
		return "", nil
	}
	b, err := os.ReadFile(f.tokenFile)
	if err != nil {
		return "", fmt.Errorf("%w: --admin-token-file: %w", vmre.ErrInvalidConfig, err)
	}
	if problem := tokenPermsProblem(f.tokenFile); problem != "" {
		if f.strictPerms {
			return "", fmt.Errorf("%w: %s (--strict-token-perms)", vmre.ErrInvalidConfig, problem)
		}
		log.Warn(problem + ", or run with --strict-token-perms to refuse it")
	}
	token := strings.TrimSpace(string(b))
	if len(token) < 16 {
		return "", fmt.Errorf("%w: --admin-token-file %s holds %d bytes: use a token of 16 bytes or more, such as head -c 32 /dev/urandom | base64",
			vmre.ErrInvalidConfig, f.tokenFile, len(token))
	}
	return token, nil
}

// tokenFileAbs is the token file's absolute path, for the clients.
func (f *adminFlags) tokenFileAbs() string {
	if f.tokenFile == "" {
		return ""
	}
	if abs, err := filepath.Abs(f.tokenFile); err == nil {
		return abs
	}
	return f.tokenFile
}

// listensOnLoopback reports whether a listen address binds loopback only:
// a loopback IP or "localhost". An empty host, 0.0.0.0 or :: bind every
// interface.
func listensOnLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return true // listen reports the malformed address
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
