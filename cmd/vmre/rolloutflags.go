package main

import (
	"flag"
	"strings"
	"time"

	"github.com/vmre/vmre/node"
	"github.com/vmre/vmre/supervise"
)

// rolloutFlags are node's flags that say how a VM whose file changed is
// rolled out.
type rolloutFlags struct {
	strategy             strategyFlag
	startFirst           string
	minHealthy, deadline time.Duration
	probeInterval        time.Duration
	noAutoRevert         bool
	keepVersions         int
}

// strategyFlag is the value of --rollout-strategy and --strategy; 0 for
// unset.
type strategyFlag struct{ s supervise.Strategy }

func (f *strategyFlag) String() string {
	if f == nil || f.s == 0 {
		return ""
	}
	return f.s.String()
}

func (f *strategyFlag) Set(s string) error {
	st, err := supervise.ParseStrategy(s)
	if err == nil {
		f.s = st
	}
	return err
}

func (f *rolloutFlags) register(fs *flag.FlagSet) {
	f.strategy.s = supervise.Replace
	fs.Var(&f.strategy, "rollout-strategy",
		"how a VM's new version takes the old one's place: `strategy` replace (stop the old run, then start the new) or start-first (start the new beside the old, switch once it is healthy)")
	fs.StringVar(&f.startFirst, "start-first", "",
		"the VMs (`names` or aliases, comma-separated) that can run twice at once: their rollouts start the new version beside the old")
	fs.DurationVar(&f.minHealthy, "min-healthy", supervise.DefaultMinHealthy,
		"how long a new version must stay up, answering its health probe, to be healthy (Nomad's min_healthy_time)")
	fs.DurationVar(&f.deadline, "healthy-deadline", supervise.DefaultHealthyDeadline,
		"the time a new version has to be healthy, from its launch, or it is rolled back (Nomad's healthy_deadline)")
	fs.DurationVar(&f.probeInterval, "health-probe-interval", supervise.DefaultProbeInterval,
		"the wait between the health probes of a new version")
	fs.BoolVar(&f.noAutoRevert, "no-auto-revert", false,
		"keep a version that failed its rollout (running unhealthy, or in its crash loop) for debugging, instead of going back to the version before")
	fs.IntVar(&f.keepVersions, "keep-versions", node.DefaultKeepVersions,
		"how many versions each VM keeps in its history, with a copy of their bytes in --data-dir, for vmre rollback")
}

func (f *rolloutFlags) validate(fs *flag.FlagSet, e env) int {
	if code := checkTimeouts(fs, e, map[string]time.Duration{
		"min-healthy": f.minHealthy, "healthy-deadline": f.deadline, "health-probe-interval": f.probeInterval,
	}); code != exitOK {
		return code
	}
	if f.keepVersions < 1 {
		return usagef(fs, e, "--keep-versions %d: keep at least 1 version, the one that runs", f.keepVersions)
	}
	return exitOK
}

func (f *rolloutFlags) config() node.RolloutConfig {
	c := node.RolloutConfig{Strategy: f.strategy.s, MinHealthy: f.minHealthy, HealthyDeadline: f.deadline,
		ProbeInterval: f.probeInterval, NoAutoRevert: f.noAutoRevert, Keep: f.keepVersions}
	for _, name := range strings.Split(f.startFirst, ",") {
		if name = strings.TrimSpace(name); name != "" {
			c.StartFirst = append(c.StartFirst, name)
		}
	}
	return c
}
