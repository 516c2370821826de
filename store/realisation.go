package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/nixpushd/nixpushd/nar"
)

// Realisations returns the realisations (ca-derivations) in Nix's
// database whose output is one of paths, with the outputs they depend on:
// what `nix copy` uploads beside content-addressed outputs. The hash in
// an ID is the derivation's hash modulo, which only the database knows
// here. A store without the database (the `nix` CLI fallback) or a
// database without the table (ca-derivations never enabled) has none.
func Realisations(ctx context.Context, st Store, paths []string) ([]*nar.Realisation, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	db, err := realisationsDB(ctx, st)
	if db == nil || err != nil {
		return nil, err
	}
	var out []*nar.Realisation
	for i := 0; i < len(paths); i += batch {
		chunk := paths[i:min(i+batch, len(paths))]
		rs, err := db.realisations(ctx, chunk)
		if err != nil {
			return nil, fmt.Errorf("query Nix database %s: %w", db.path, err)
		}
		out = append(out, rs...)
	}
	return out, nil
}

func dbOf(st Store) *DB {
	switch s := st.(type) {
	case *DB:
		return s
	case *Auto:
		return s.tryDB()
	case *Cached:
		return dbOf(s.Store)
	}
	return nil
}

func (s *DB) realisations(ctx context.Context, paths []string) ([]*nar.Realisation, error) {
	args := make([]any, len(paths))
	for i, p := range paths {
		args[i] = p
	}
	rows, err := s.db.QueryContext(ctx, `SELECT r.id, r.drvPath, r.outputName, v.path, coalesce(r.signatures, '')
		FROM Realisations r JOIN ValidPaths v ON v.id = r.outputPath
		WHERE v.path IN (`+placeholders(len(paths))+`) ORDER BY r.id`, args...)
	if err != nil {
		return nil, err
	}
	byRow := map[int64]*nar.Realisation{}
	var out []*nar.Realisation
	for rows.Next() {
		var id int64
		var hash, output, path, sigs string
		if err := rows.Scan(&id, &hash, &output, &path, &sigs); err != nil {
			rows.Close()
			return nil, err
		}
		r := &nar.Realisation{ID: hash + "!" + output, OutPath: strings.TrimPrefix(path, nar.StoreDir+"/"),
			Signatures: strings.Fields(sigs), DependentRealisations: map[string]string{}}
		byRow[id] = r
		out = append(out, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if err := s.loadDeps(ctx, byRow); err != nil {
		return nil, err
	}
	return out, nil
}

// loadDeps fills the DependentRealisations of each realisation, by its
// row id.
func (s *DB) loadDeps(ctx context.Context, byRow map[int64]*nar.Realisation) error {
	for id, r := range byRow {
		deps, err := s.db.QueryContext(ctx, `SELECT d.drvPath, d.outputName, v.path
			FROM RealisationsRefs x JOIN Realisations d ON d.id = x.realisationReference JOIN ValidPaths v ON v.id = d.outputPath
			WHERE x.referrer = ?`, id)
		if err != nil {
			return err
		}
		for deps.Next() {
			var hash, output, path string
			if err := deps.Scan(&hash, &output, &path); err != nil {
				deps.Close()
				return err
			}
			r.DependentRealisations[hash+"!"+output] = strings.TrimPrefix(path, nar.StoreDir+"/")
		}
		deps.Close()
		if err := deps.Err(); err != nil {
			return err
		}
	}
	return nil
}

// realisationsDB is st's database if it has the realisation tables
// (ca-derivations enabled once), else nil.
func realisationsDB(ctx context.Context, st Store) (*DB, error) {
	db := dbOf(st)
	if db == nil {
		return nil, nil
	}
	var n int
	if err := db.db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE name IN ('Realisations', 'RealisationsRefs')`).Scan(&n); err != nil {
		return nil, fmt.Errorf("query Nix database %s: %w", db.path, err)
	}
	if n != 2 {
		return nil, nil
	}
	return db, nil
}
