package daemon

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nixpushd/nixpushd/lifecycle"
)

// DefaultSkipKey is the upstream key whose signature marks a path as
// substituted rather than built here (--skip-signed-by).
const DefaultSkipKey = "cache.nixos.org-1"

// Config is what the daemon is told on its command line.
type Config struct {
	StateDir string
	// SecretKeyFile is where the signing key comes from, for status.
	SecretKeyFile     string
	Socket            string
	SpoolDir          string
	WatchStore        bool
	StoreDir          string // watched directory; /nix/store
	ReconcileInterval time.Duration
	SkipSignedBy      []string // key names; a root signed by one was substituted, not built
	PushDerivations   bool
	Include, Exclude  *regexp.Regexp // on the name part of store paths
	ShutdownTimeout   time.Duration
	MaxRetryDelay     time.Duration
	// MaxActive bounds the queue items being worked on at once (each may
	// pull in a closure); the Pusher's Jobs bounds the CPU-heavy part.
	MaxActive int
	// Pins are named roots the daemon keeps pointing at what a path (often
	// a symlink such as /run/current-system) resolves to, pushing its
	// closure first; gc on every machine keeps them.
	Pins map[string]string
	// MetricsListen is the HOST:PORT of the Prometheus metrics ("": off).
	MetricsListen string
	// ProbeEvery is how often a degraded cache is checked again (0: once
	// a minute).
	ProbeEvery time.Duration
}

// Filter decides whether a root path should be pushed, and why not.
// Skip reasons are stable strings: status counts them.
func (c *Config) Filter(path string, sigs []string) (skip string) {
	base := strings.TrimPrefix(path, c.StoreDir+"/")
	name := base
	if _, n, ok := strings.Cut(base, "-"); ok {
		name = n
	}
	if strings.HasSuffix(name, ".drv") && !c.PushDerivations {
		return "derivation"
	}
	for _, s := range sigs {
		keyName, _, _ := strings.Cut(s, ":")
		for _, k := range c.SkipSignedBy {
			if keyName == k {
				return "signed-by-upstream"
			}
		}
	}
	if c.Include != nil && !c.Include.MatchString(name) {
		return "not-included"
	}
	if c.Exclude != nil && c.Exclude.MatchString(name) {
		return "excluded"
	}
	return ""
}

// Validate checks the values that flags alone cannot, and returns the
// first problem.
func (c *Config) Validate() error {
	if p := c.Problems(); len(p) > 0 {
		return p[0]
	}
	return nil
}

// Problems is every problem Validate would report.
func (c *Config) Problems() []error {
	var ps []error
	if c.ReconcileInterval < time.Second {
		ps = append(ps, fmt.Errorf("--reconcile-interval %v: must be at least 1s", c.ReconcileInterval))
	}
	if c.ShutdownTimeout <= 0 {
		ps = append(ps, fmt.Errorf("--shutdown-timeout %v: must be positive", c.ShutdownTimeout))
	}
	if c.MaxRetryDelay < time.Second {
		ps = append(ps, fmt.Errorf("--max-retry-delay %v: must be at least 1s", c.MaxRetryDelay))
	}
	if c.MaxActive < 1 {
		ps = append(ps, fmt.Errorf("--max-active %d: must be at least 1", c.MaxActive))
	}
	for _, name := range slices.Sorted(maps.Keys(c.Pins)) {
		path := c.Pins[name]
		if err := lifecycle.CheckPinName(name); err != nil {
			ps = append(ps, fmt.Errorf("--pin %s=%s: %w", name, path, err))
		}
		if !strings.HasPrefix(path, "/") {
			ps = append(ps, fmt.Errorf("--pin %s=%s: the path must be absolute", name, path))
		}
	}
	if c.Socket == "" {
		ps = append(ps, fmt.Errorf("--socket: must not be empty"))
	}
	return ps
}
