package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
)

const completionHead = `Usage: vmre completion bash|zsh|fish

completion prints a shell's completion script for vmre: the commands, each
command's flags, and for stop, start, restart, logs, inspect, rollout,
rollback and history the names of the VMs of the running node (vmre ps -a -q, as VMRE_NODE chooses it).

Examples:
  source <(vmre completion bash)                       # in ~/.bashrc
  vmre completion zsh > "${fpath[1]}/_vmre"             # or source it in ~/.zshrc
  vmre completion fish > ~/.config/fish/completions/vmre.fish

`

// vmCommands take VM names as arguments.
var vmCommands = []string{"stop", "start", "restart", "logs", "inspect", "rollout", "rollback", "history"}

func completionCommand(ctx context.Context, args []string, e env) int {
	fs := newFlagSet("completion")
	if err := parseFlags(fs, completionHead, "", args, e); err != nil {
		return flagExit(err)
	}
	if fs.NArg() != 1 {
		return usagef(fs, e, "want one shell: bash, zsh or fish")
	}
	flags := commandFlags(ctx, e)
	switch fs.Arg(0) {
	case "bash":
		writeBash(e.stdout, flags, false)
	case "zsh":
		writeBash(e.stdout, flags, true)
	case "fish":
		writeFish(e.stdout, flags)
	default:
		return usagef(fs, e, "%q: vmre completes bash, zsh and fish", fs.Arg(0))
	}
	return exitOK
}

// commandFlags are each command's flags, as its --help lists them: the
// flags of a command are declared where it runs.
func commandFlags(ctx context.Context, e env) map[string][]string {
	out := map[string][]string{}
	for _, c := range commands {
		if c.name == "completion" {
			continue
		}
		var help strings.Builder
		c.run(ctx, []string{"--help"}, env{stdout: &help, stderr: io.Discard, getenv: e.getenv, terminal: e.terminal})
		sc := bufio.NewScanner(strings.NewReader(help.String()))
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "  -") {
				continue
			}
			flag, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			flag = strings.TrimSuffix(flag, ",")
			if !slices.Contains(out[c.name], flag) {
				out[c.name] = append(out[c.name], flag)
			}
		}
		out[c.name] = append(out[c.name], "--help")
	}
	return out
}

func commandNames() []string {
	var names []string
	for _, c := range commands {
		names = append(names, c.name)
	}
	return append(names, "help")
}

// writeBash writes the bash script; zsh runs it through bashcompinit.
func writeBash(w io.Writer, flags map[string][]string, zsh bool) {
	if zsh {
		fmt.Fprint(w, "#compdef vmre\n# zsh completion for vmre (vmre completion zsh), through bash's\nautoload -U +X bashcompinit && bashcompinit\n")
	} else {
		fmt.Fprint(w, "# bash completion for vmre (vmre completion bash)\n")
	}
	fmt.Fprintf(w, `_vmre() {
  local cur="${COMP_WORDS[COMP_CWORD]}" cmd="${COMP_WORDS[1]}"
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "%s --help --version" -- "$cur"))
    return
  fi
  if [[ "$cur" == -* ]]; then
    case "$cmd" in
`, strings.Join(commandNames(), " "))
	for _, c := range commands {
		if f := flags[c.name]; len(f) > 0 {
			fmt.Fprintf(w, "      %s) COMPREPLY=($(compgen -W %q -- \"$cur\")) ;;\n", c.name, strings.Join(f, " "))
		}
	}
	fmt.Fprintf(w, `    esac
    return
  fi
  case "$cmd" in
    %s) COMPREPLY=($(compgen -W "$(vmre ps -a -q 2>/dev/null)" -- "$cur")) ;;
    run|doctor) COMPREPLY=($(compgen -f -- "$cur")) ;;
    completion) COMPREPLY=($(compgen -W "bash zsh fish" -- "$cur")) ;;
    remote) [ "$COMP_CWORD" -eq 2 ] && COMPREPLY=($(compgen -W "env systemd k8s rotate" -- "$cur")) ;;
    help) COMPREPLY=($(compgen -W "%s" -- "$cur")) ;;
  esac
}
complete -F _vmre vmre
`, strings.Join(vmCommands, "|"), strings.Join(commandNames(), " "))
}

func writeFish(w io.Writer, flags map[string][]string) {
	fmt.Fprint(w, "# fish completion for vmre (vmre completion fish)\ncomplete -c vmre -f\n")
	for _, c := range commands {
		fmt.Fprintf(w, "complete -c vmre -n __fish_use_subcommand -a %s -d %q\n", c.name, c.summary)
	}
	for _, c := range commands {
		for _, f := range flags[c.name] {
			opt := "-l " + strings.TrimLeft(f, "-")
			if !strings.HasPrefix(f, "--") {
				opt = "-s " + strings.TrimLeft(f, "-")
			}
			fmt.Fprintf(w, "complete -c vmre -n '__fish_seen_subcommand_from %s' %s\n", c.name, opt)
		}
	}
	fmt.Fprintf(w, "complete -c vmre -n '__fish_seen_subcommand_from %s' -a '(vmre ps -a -q 2>/dev/null)'\n", strings.Join(vmCommands, " "))
	fmt.Fprint(w, "complete -c vmre -n '__fish_seen_subcommand_from run doctor' -F\n")
	fmt.Fprint(w, "complete -c vmre -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'\n")
	fmt.Fprint(w, "complete -c vmre -n '__fish_seen_subcommand_from remote' -a 'env systemd k8s rotate'\n")
}
