package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Phase outcomes in doctor's report.
type outcome string

const (
	phaseOK   outcome = "ok"
	phaseFail outcome = "FAIL"
	phaseSkip outcome = "skip"
	phaseWarn outcome = "WARN" // passed, with something to look at
)

// phase is one line of doctor's report.
type phase struct {
	name    string
	outcome outcome
	elapsed time.Duration // 0: not timed
	detail  string
	cause   string   // for a failure: the likely cause
	fix     string   // for a failure: what to do
	lines   []string // the VM's last output lines, marked by stream, when they help
	header  string   // what lines are, when not the VM's last output lines
}

// report is doctor's verdict on one plugin.
type report struct {
	command string // the plugin and its arguments, as given
	phases  []phase
	code    int    // the exit code, as `vmre run` would give
	verdict string // one line
}

func (r *report) add(p phase) { r.phases = append(r.phases, p) }

// failed records a failed phase, the verdict and exit code, and skips the
// phases that remain.
func (r *report) failed(p phase, code int, verdict string, rest ...string) {
	p.outcome = phaseFail
	r.add(p)
	r.code, r.verdict = code, verdict
	for _, name := range rest {
		r.add(phase{name: name, outcome: phaseSkip})
	}
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "vmre doctor: %s\n\n", r.command)
	for _, p := range r.phases {
		elapsed := "-"
		if p.elapsed > 0 {
			elapsed = roundDuration(p.elapsed).String()
		}
		line := fmt.Sprintf("  %-4s  %-9s  %-8s  %s", p.outcome, p.name, elapsed, p.detail)
		fmt.Fprintln(w, strings.TrimRight(line, " "))
		if p.cause != "" {
			fmt.Fprintf(w, "        cause: %s\n", p.cause)
		}
		if p.fix != "" {
			fmt.Fprintf(w, "        fix:   %s\n", p.fix)
		}
		if len(p.lines) > 0 {
			header := p.header
			if header == "" {
				header = "last output lines of the VM:"
			}
			fmt.Fprintln(w, "        "+header)
			for _, l := range p.lines {
				fmt.Fprintf(w, "          | %s\n", l)
			}
		}
	}
	fmt.Fprintf(w, "\nverdict: %s (exit code %d)\n", r.verdict, r.code)
}

// roundDuration keeps three significant digits or so.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond / 10)
}
