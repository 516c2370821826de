package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/nixpushd/nixpushd/store"
	"github.com/nixpushd/nixpushd/upload"
)

// pushBuildLogs uploads, with --build-logs, the build logs of push's
// arguments: a .drv argument's own, and each other argument's deriver's.
// Only the roots: a closure's members were mostly substituted, and their
// logs are not here. It is done after the closure, so a log never comes
// before the narinfo that names its derivation.
func pushBuildLogs(ctx context.Context, p *upload.Pusher, roots []string, closure []*store.PathInfo, stderr io.Writer) error {
	if p.BuildLogDir == "" {
		return nil
	}
	deriver := make(map[string]string, len(closure))
	for _, pi := range closure {
		deriver[pi.Path] = pi.Deriver
	}
	seen := map[string]bool{}
	n := 0
	for _, r := range roots {
		drv := r
		if !strings.HasSuffix(r, ".drv") {
			drv = deriver[r]
		}
		if drv == "" || seen[drv] {
			continue
		}
		seen[drv] = true
		ok, err := p.PushBuildLog(ctx, drv)
		if err != nil {
			return err
		}
		if ok {
			n++
		}
	}
	fmt.Fprintf(stderr, "build logs: %d of %d derivations (the others' logs are not in %s)\n", n, len(seen), p.BuildLogDir)
	return nil
}

// pushRealisations uploads, after the closure, the realisations
// (ca-derivations) of its paths that the Nix database has.
func pushRealisations(ctx context.Context, p *upload.Pusher, st store.Store, closure []*store.PathInfo, stderr io.Writer) error {
	if !p.Realisations {
		return nil
	}
	paths := make([]string, len(closure))
	in := make(map[string]bool, len(closure))
	for i, pi := range closure {
		paths[i] = pi.Path
		in[pi.Path] = true
	}
	rs, err := store.Realisations(ctx, st, paths)
	if err != nil || len(rs) == 0 {
		return err
	}
	n, err := p.PushRealisations(ctx, upload.Publishable(rs, func(path string) bool { return in[path] }))
	if n > 0 {
		fmt.Fprintf(stderr, "realisations: %d written (content-addressed derivation outputs)\n", n)
	}
	return err
}
