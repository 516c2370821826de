package store

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Open returns a Store that reads the database at dbPath (empty: DefaultDB)
// when it can and asks `nix path-info` when it cannot.
func Open(dbPath string) (Store, error) {
	if dbPath == "" {
		dbPath = DefaultDB
	}
	a := &Auto{path: dbPath, cli: NewCLI()}
	a.tryDB()
	return a, nil
}

// Auto prefers the database and falls back to the CLI, per call. A reader
// that may not create Nix's WAL files (a non-root service at boot, before
// anything opened the database) cannot open it yet, so Auto tries again
// from time to time; once open, its connection keeps the files alive.
type Auto struct {
	path string
	cli  *CLI

	mu      sync.Mutex
	db      *DB
	lastTry time.Time
}

const dbRetry = 30 * time.Second

func (a *Auto) tryDB() *DB {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.db != nil || time.Since(a.lastTry) < dbRetry {
		return a.db
	}
	a.lastTry = time.Now()
	if db, err := OpenDB(a.path); err == nil {
		a.db = db
	}
	return a.db
}

// UsingDB reports whether the database is open.
func (a *Auto) UsingDB() bool { return a.tryDB() != nil }

func (a *Auto) PathInfos(ctx context.Context, paths []string) ([]*PathInfo, error) {
	if db := a.tryDB(); db != nil {
		infos, err := db.PathInfos(ctx, paths)
		if err == nil || errors.Is(err, ErrNotValid) || ctx.Err() != nil {
			return infos, err
		}
	}
	return a.cli.PathInfos(ctx, paths)
}

func (a *Auto) Closure(ctx context.Context, paths []string) ([]*PathInfo, error) {
	if db := a.tryDB(); db != nil {
		infos, err := db.Closure(ctx, paths)
		if err == nil || errors.Is(err, ErrNotValid) || ctx.Err() != nil {
			return infos, err
		}
	}
	return a.cli.Closure(ctx, paths)
}

func (a *Auto) DerivationOutputs(ctx context.Context, drv string) ([]string, error) {
	if db := a.tryDB(); db != nil {
		outs, err := db.DerivationOutputs(ctx, drv)
		if err == nil || ctx.Err() != nil {
			return outs, err
		}
	}
	return a.cli.DerivationOutputs(ctx, drv)
}

func (a *Auto) ValidPaths(ctx context.Context, paths []string) ([]string, error) {
	if db := a.tryDB(); db != nil {
		valid, err := db.ValidPaths(ctx, paths)
		if err == nil || ctx.Err() != nil {
			return valid, err
		}
	}
	return a.cli.ValidPaths(ctx, paths)
}

func (a *Auto) RegisteredSince(ctx context.Context, t int64) ([]Registered, error) {
	if db := a.tryDB(); db != nil {
		return db.RegisteredSince(ctx, t)
	}
	return a.cli.RegisteredSince(ctx, t)
}

func (a *Auto) RegisteredAfter(ctx context.Context, seq int64) ([]Registered, error) {
	if db := a.tryDB(); db != nil {
		return db.RegisteredAfter(ctx, seq)
	}
	return a.cli.RegisteredAfter(ctx, seq)
}

func (a *Auto) LastSeq(ctx context.Context) (int64, error) {
	if db := a.tryDB(); db != nil {
		return db.LastSeq(ctx)
	}
	return a.cli.LastSeq(ctx)
}

func (a *Auto) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.db != nil {
		return a.db.Close()
	}
	return nil
}
