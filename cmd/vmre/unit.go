package main

import (
	"fmt"
	"io"
	"net"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/vmre/vmre/client"
	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
)

// unitConfig is what vmre remote systemd renders, checked.
type unitConfig struct {
	name      string
	argv      []string // the VM's command: an absolute path, then its arguments
	user      string   // "" for a dynamic user
	envFile   string
	listen    string
	advertise string // "" when the VM advertises its listener's own address
}

// systemdName is what a VM's name may be in a unit: its Description and
// its StateDirectory's last component.
var systemdName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@:-]*$`)

// userName is what --user takes: a user name as useradd makes them, or a
// numeric id.
var userName = regexp.MustCompile(`^([a-z_][a-z0-9_-]*\$?|[0-9]+)$`)

// checkUnit checks the flags of vmre remote systemd; its errors name the
// flag to fix.
func checkUnit(name string, f *remoteFlags, args []string) (unitConfig, error) {
	u := unitConfig{name: name, user: f.user, envFile: f.envFile, listen: f.listen}
	switch {
	case !systemdName.MatchString(name):
		return u, fmt.Errorf("the VM's name %q cannot name a systemd unit's state directory: it must start with a letter or digit and hold only letters, digits and _ . @ : -", name)
	case f.exec == "":
		return u, fmt.Errorf("--exec is required: the absolute path of the VM binary on its host")
	case !path.IsAbs(f.exec):
		return u, fmt.Errorf("--exec %q: give the absolute path of the VM binary on its host", f.exec)
	case strings.ContainsAny(f.exec, " \t\n"):
		return u, fmt.Errorf("--exec %q holds a space: --exec takes the binary's path alone; give its arguments after NAME (vmre remote systemd --exec PATH NAME -- ARG ...)", f.exec)
	case u.user != "" && !userName.MatchString(u.user):
		return u, fmt.Errorf("--user %q is not a user name (letters, digits, _ and -, starting with a letter or _) or a numeric id", u.user)
	}
	if u.envFile == "" {
		u.envFile = "/etc/vmre/" + name + ".env"
	}
	if !path.IsAbs(u.envFile) || strings.ContainsAny(u.envFile, " \t\n\"\\") {
		return u, fmt.Errorf("--env-file %q: give an absolute path without spaces, quotes or backslashes", u.envFile)
	}
	host, port, err := net.SplitHostPort(u.listen)
	if err != nil || net.ParseIP(host) == nil {
		return u, fmt.Errorf("--listen %q is not an IP:PORT such as 0.0.0.0:9650", u.listen)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return u, fmt.Errorf("--listen %q: the port must be a number from 1 to 65535: the node is told the address, so it cannot be a free port chosen at start", u.listen)
	}
	switch adv := f.advertise; {
	case adv == "" && net.ParseIP(host).IsUnspecified():
		return u, fmt.Errorf("--listen %s binds every interface, so the VM cannot tell the node where to reach it: "+
			"give --advertise HOST:PORT, the address of the VM's host that the node reaches (such as 10.0.0.2:%s), "+
			"or --listen with that address itself", u.listen, port)
	case adv == "":
		// The VM advertises its listener's own address (client.AdvertiseAddrKey's default).
	case net.ParseIP(strings.Trim(adv, "[]")) != nil || validHostname(adv):
		u.advertise = net.JoinHostPort(strings.Trim(adv, "[]"), port)
	default:
		ah, ap, err := net.SplitHostPort(adv)
		if p, perr := strconv.ParseUint(ap, 10, 16); err != nil || ah == "" || perr != nil || p == 0 || (net.ParseIP(ah) == nil && !validHostname(ah)) {
			return u, fmt.Errorf("--advertise %q is not a HOST:PORT (or a HOST, with --listen's port) such as 10.0.0.2:9650", adv)
		}
		u.advertise = adv
	}
	u.argv = append([]string{f.exec}, args...)
	return u, nil
}

// validHostname reports whether s is a DNS name such as vm1.example.
func validHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if !dnsLabel.MatchString(label) {
			return false
		}
	}
	return true
}

var dnsLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// writeUnit prints a systemd unit: the token stays in the environment
// file, readable by root alone; the unit holds no secret.
func writeUnit(w io.Writer, en *adminv1.Enrollment, u unitConfig) {
	fmt.Fprintf(w, `# The remote VM %[1]s of a vmre node, made by: vmre remote systemd %[1]s
# Its environment holds its token: write it, readable by root alone, with
#   vmre remote env %[1]s > %[2]s && chmod 600 %[2]s
# Exit codes: 0 stopped as asked, 1 failed, 2 misconfigured (not restarted),
# 75 the node ended its session or was lost: started again (docs/REMOTE.md).
[Unit]
Description=vmre remote VM %[3]s
Wants=network-online.target
After=network-online.target
StartLimitIntervalSec=0

[Service]
Type=exec
ExecStart=%[4]s
EnvironmentFile=%[5]s
Environment=%[6]s
`, en.GetName(), u.envFile, specifierEscape(u.name), execLine(u.argv), specifierEscape(u.envFile),
		envAssignment(client.ListenAddrKey, u.listen))
	if u.advertise != "" {
		fmt.Fprintf(w, "Environment=%s\n", envAssignment(client.AdvertiseAddrKey, u.advertise))
	}
	if u.user != "" {
		fmt.Fprintf(w, "User=%s\n", u.user)
	} else {
		fmt.Fprintln(w, "DynamicUser=yes")
	}
	fmt.Fprintf(w, `# The VM's own files: $STATE_DIRECTORY, /var/lib/vmre/%[1]s.
StateDirectory=vmre/%[1]s
StateDirectoryMode=0700
# A VM that lost its node, or whose session the node ended, exits 75; one
# the node's operator stopped exits 0 and is refused until started on the
# node. It starts again, and handshakes anew once admitted.
Restart=always
RestartSec=5
RestartPreventExitStatus=2
KillSignal=SIGTERM
TimeoutStopSec=30
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
`, specifierEscape(u.name))
}

// execLine is argv as an ExecStart= value, each word quoted and escaped
// as systemd.syntax(7) and systemd.service(5) say, so that systemd passes
// it to the VM unchanged: specifiers (%) and variables ($) doubled,
// backslashes and quotes escaped, control characters as C escapes.
func execLine(argv []string) string {
	words := make([]string, len(argv))
	for i, a := range argv {
		words[i] = execWord(a)
	}
	return strings.Join(words, " ")
}

// execWord is one word of an ExecStart= line: bare when it holds only
// characters with no meaning to systemd, else in double quotes.
func execWord(s string) string {
	var b strings.Builder
	bare := s != ""
	for _, r := range s {
		switch {
		case r == '%':
			b.WriteString("%%")
		case r == '$':
			b.WriteString("$$")
		case r == '\\':
			b.WriteString(`\\`)
			bare = false
		case r == '"':
			b.WriteString(`\"`)
			bare = false
		case r == '\n':
			b.WriteString(`\n`)
			bare = false
		case r == '\t':
			b.WriteString(`\t`)
			bare = false
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
			bare = false
		default:
			b.WriteRune(r)
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-=:,+@", r)) {
				bare = false
			}
		}
	}
	if bare {
		return b.String()
	}
	return `"` + b.String() + `"`
}

// specifierEscape doubles the % of a value in which systemd resolves
// specifiers.
func specifierEscape(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// envAssignment is an Environment= value assigning value, an address that
// checkUnit checked (no space, quote, backslash or %), to key.
func envAssignment(key, value string) string { return key + "=" + value }
