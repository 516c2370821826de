package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/nixpushd/nixpushd/nar"
)

// RealisationsByID returns the realisations in Nix's database with the
// given IDs ("sha256:<hex>!<output>") whose output is valid, with the
// outputs they depend on; an ID the database does not know is left out.
// verify --repair uses it for a realisations/<id>.doi that does not
// parse: its name still says which realisation it was. A store without
// the database (or without the table) knows none.
func RealisationsByID(ctx context.Context, st Store, ids []string) ([]*nar.Realisation, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	db, err := realisationsDB(ctx, st)
	if db == nil || err != nil {
		return nil, err
	}
	var out []*nar.Realisation
	byRow := map[int64]*nar.Realisation{}
	for _, id := range ids {
		hash, output, ok := strings.Cut(id, "!")
		if !ok {
			continue
		}
		var row int64
		var path, sigs string
		err := db.db.QueryRowContext(ctx, `SELECT r.id, v.path, coalesce(r.signatures, '')
			FROM Realisations r JOIN ValidPaths v ON v.id = r.outputPath
			WHERE r.drvPath = ? AND r.outputName = ?`, hash, output).Scan(&row, &path, &sigs)
		if err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			return nil, fmt.Errorf("query Nix database %s: %w", db.path, err)
		}
		r := &nar.Realisation{ID: id, OutPath: strings.TrimPrefix(path, nar.StoreDir+"/"),
			Signatures: strings.Fields(sigs), DependentRealisations: map[string]string{}}
		byRow[row] = r
		out = append(out, r)
	}
	if err := db.loadDeps(ctx, byRow); err != nil {
		return nil, fmt.Errorf("query Nix database %s: %w", db.path, err)
	}
	return out, nil
}
