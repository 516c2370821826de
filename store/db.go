package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nixpushd/nixpushd/nar"

	_ "modernc.org/sqlite" // pure Go: no cgo, so the static binary stays simple
)

// DB reads Nix's SQLite database read-only. Nix runs it in WAL mode, so
// reading never blocks a build.
type DB struct {
	db   *sql.DB
	path string
}

// OpenDB opens Nix's database at path read-only.
func OpenDB(path string) (*DB, error) {
	u := url.URL{Scheme: "file", Path: path, RawQuery: "mode=ro&_pragma=busy_timeout(10000)&_pragma=query_only(1)"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, fmt.Errorf("open Nix database %s: %w", path, err)
	}
	db.SetMaxOpenConns(maxConns)
	// Keep them all: a new connection reads the schema again and starts
	// with an empty page cache. Idle ones hold no read snapshot.
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name = 'ValidPaths'`).Scan(&n); err != nil || n != 1 {
		db.Close()
		if err == nil {
			err = fmt.Errorf("no ValidPaths table")
		}
		return nil, fmt.Errorf("open Nix database %s: %w (run as a user that can read it, or nixpushd falls back to `nix path-info`)", path, err)
	}
	return &DB{db: db, path: path}, nil
}

func (s *DB) Close() error { return s.db.Close() }

// maxConns bounds the database connections, and so the queries at once.
const maxConns = 4

// batch keeps the number of SQL parameters well under SQLite's limit.
const batch = 400

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

// PathInfos asks in chunks, several at once (one per connection): a
// closure of 100,000 paths is 500 queries, and reading the database is
// CPU work.
func (s *DB) PathInfos(ctx context.Context, paths []string) ([]*PathInfo, error) {
	chunks := make([][]*PathInfo, (len(paths)+batch-1)/batch)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxConns)
	for i := range chunks {
		chunk := paths[i*batch : min((i+1)*batch, len(paths))]
		g.Go(func() error {
			infos, err := s.query(gctx, chunk)
			chunks[i] = infos
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := make([]*PathInfo, 0, len(paths))
	for _, c := range chunks {
		out = append(out, c...)
	}
	return out, nil
}

func (s *DB) query(ctx context.Context, paths []string) ([]*PathInfo, error) {
	args := make([]any, len(paths))
	for i, p := range paths {
		args[i] = p
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, path, hash, registrationTime, deriver, narSize, ultimate, sigs, ca
		FROM ValidPaths WHERE path IN (`+placeholders(len(paths))+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("query Nix database %s: %w", s.path, err)
	}
	defer rows.Close()
	byID := make(map[int64]*PathInfo, len(paths))
	byPath := make(map[string]*PathInfo, len(paths))
	for rows.Next() {
		var (
			id, regTime       int64
			path, hash        string
			deriver, sigs, ca sql.NullString
			narSize, ultimate sql.NullInt64
		)
		if err := rows.Scan(&id, &path, &hash, &regTime, &deriver, &narSize, &ultimate, &sigs, &ca); err != nil {
			return nil, fmt.Errorf("query Nix database %s: %w", s.path, err)
		}
		h, err := nar.ParseHash(hash)
		if err != nil {
			return nil, fmt.Errorf("%s: NarHash %q in the Nix database: %w", path, hash, err)
		}
		pi := &PathInfo{
			Path:             path,
			NarHash:          h,
			NarSize:          narSize.Int64,
			Deriver:          deriver.String,
			Sigs:             fieldsOrNil(sigs.String),
			CA:               ca.String,
			RegistrationTime: time.Unix(regTime, 0),
			Ultimate:         ultimate.Int64 != 0,
			References:       []string{},
		}
		byID[id] = pi
		byPath[path] = pi
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query Nix database %s: %w", s.path, err)
	}
	for _, p := range paths {
		if byPath[p] == nil {
			return nil, fmt.Errorf("%s: %w", p, ErrNotValid)
		}
	}
	if len(byID) > 0 {
		ids := make([]any, 0, len(byID))
		for id := range byID {
			ids = append(ids, id)
		}
		refRows, err := s.db.QueryContext(ctx, `SELECT r.referrer, v.path FROM Refs r JOIN ValidPaths v ON v.id = r.reference
			WHERE r.referrer IN (`+placeholders(len(ids))+`)`, ids...)
		if err != nil {
			return nil, fmt.Errorf("query Nix database %s: %w", s.path, err)
		}
		defer refRows.Close()
		for refRows.Next() {
			var referrer int64
			var ref string
			if err := refRows.Scan(&referrer, &ref); err != nil {
				return nil, fmt.Errorf("query Nix database %s: %w", s.path, err)
			}
			byID[referrer].References = append(byID[referrer].References, ref)
		}
		if err := refRows.Err(); err != nil {
			return nil, fmt.Errorf("query Nix database %s: %w", s.path, err)
		}
	}
	out := make([]*PathInfo, 0, len(paths))
	for _, p := range paths {
		pi := byPath[p]
		sort.Strings(pi.References)
		out = append(out, pi)
	}
	return out, nil
}

func (s *DB) Closure(ctx context.Context, paths []string) ([]*PathInfo, error) {
	return closureBFS(ctx, paths, s.PathInfos)
}

// RegisteredSince scans the whole of ValidPaths: there is no index on
// registrationTime. The daemon uses it once, to move a checkpoint of an
// older nixpushd onto RegisteredAfter.
func (s *DB) RegisteredSince(ctx context.Context, t int64) ([]Registered, error) {
	return s.registered(ctx, `SELECT id, path, registrationTime FROM ValidPaths WHERE registrationTime >= ? ORDER BY registrationTime, id`, t)
}

// RegisteredAfter reads only the rows after seq, through the primary key:
// a registration is a new row, and ValidPaths' ids are AUTOINCREMENT, so
// they only grow, whatever the clock or the registrationTime Nix was
// given (nix-store --register-validity, --load-db).
func (s *DB) RegisteredAfter(ctx context.Context, seq int64) ([]Registered, error) {
	return s.registered(ctx, `SELECT id, path, registrationTime FROM ValidPaths WHERE id > ? ORDER BY id`, seq)
}

func (s *DB) LastSeq(ctx context.Context) (int64, error) {
	var seq int64
	if err := s.db.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM ValidPaths`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("query Nix database %s: %w", s.path, err)
	}
	return seq, nil
}

func (s *DB) registered(ctx context.Context, query string, arg int64) ([]Registered, error) {
	rows, err := s.db.QueryContext(ctx, query, arg)
	if err != nil {
		return nil, fmt.Errorf("query Nix database %s: %w", s.path, err)
	}
	defer rows.Close()
	var out []Registered
	for rows.Next() {
		var r Registered
		if err := rows.Scan(&r.Seq, &r.Path, &r.Time); err != nil {
			return nil, fmt.Errorf("query Nix database %s: %w", s.path, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func fieldsOrNil(s string) []string {
	if f := strings.Fields(s); len(f) > 0 {
		return f
	}
	return nil
}

func (s *DB) ValidPaths(ctx context.Context, paths []string) ([]string, error) {
	valid := make(map[string]bool, len(paths))
	for i := 0; i < len(paths); i += batch {
		chunk := paths[i:min(i+batch, len(paths))]
		args := make([]any, len(chunk))
		for j, p := range chunk {
			args[j] = p
		}
		rows, err := s.db.QueryContext(ctx, `SELECT path FROM ValidPaths WHERE path IN (`+placeholders(len(chunk))+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("query Nix database %s: %w", s.path, err)
		}
		for rows.Next() {
			var p string
			if err := rows.Scan(&p); err != nil {
				rows.Close()
				return nil, fmt.Errorf("query Nix database %s: %w", s.path, err)
			}
			valid[p] = true
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("query Nix database %s: %w", s.path, err)
		}
	}
	var out []string
	for _, p := range paths {
		if valid[p] {
			out = append(out, p)
		}
	}
	return out, nil
}

func (s *DB) DerivationOutputs(ctx context.Context, drv string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT o.path FROM DerivationOutputs o JOIN ValidPaths v ON v.id = o.drv WHERE v.path = ? ORDER BY o.id`, drv)
	if err != nil {
		return nil, fmt.Errorf("query Nix database %s: %w", s.path, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, fmt.Errorf("query Nix database %s: %w", s.path, err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}
