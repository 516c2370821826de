package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// nixSchema is the part of Nix's database schema the store reads.
const nixSchema = `
CREATE TABLE ValidPaths (
    id               integer primary key autoincrement not null,
    path             text unique not null,
    hash             text not null,
    registrationTime integer not null,
    deriver          text,
    narSize          integer,
    ultimate         integer,
    sigs             text,
    ca               text
);
CREATE TABLE Refs (
    referrer  integer not null,
    reference integer not null,
    primary key (referrer, reference)
);
CREATE INDEX IndexReferrer on Refs(referrer);
CREATE INDEX IndexReference on Refs(reference);
CREATE TABLE DerivationOutputs (drv integer not null, id text not null, path text not null, primary key (drv, id));
`

// syntheticDB writes a Nix-shaped database with n valid paths registered
// one second apart, the last 10 after the returned checkpoint.
func syntheticDB(tb testing.TB, n int) (path string, checkpoint int64) {
	tb.Helper()
	path = filepath.Join(tb.TempDir(), "db.sqlite")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(nixSchema); err != nil {
		tb.Fatal(err)
	}
	tx, _ := db.Begin()
	stmt, _ := tx.Prepare(`INSERT INTO ValidPaths (path, hash, registrationTime, narSize, ultimate) VALUES (?, ?, ?, ?, 1)`)
	const base = 1_700_000_000
	for i := range n {
		p := fmt.Sprintf("/nix/store/%032d-synthetic-%d", i, i)
		if _, err := stmt.Exec(p, "sha256:0000000000000000000000000000000000000000000000000000000000000000", base+i, 1000); err != nil {
			tb.Fatal(err)
		}
	}
	stmt.Close()
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
	return path, base + int64(n) - 10
}

func TestRegisteredSinceSynthetic(t *testing.T) {
	path, cp := syntheticDB(t, 1000)
	db, err := OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	regs, err := db.RegisteredSince(context.Background(), cp)
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 10 || regs[0].Time != cp || regs[9].Time != cp+9 {
		t.Errorf("got %d registrations %v", len(regs), regs)
	}
}

// RegisteredAfter reads the rows after a Seq, in order, including one
// registered with an older time (nix-store --register-validity), which
// a scan by time misses.
func TestRegisteredAfterSynthetic(t *testing.T) {
	path, cp := syntheticDB(t, 1000)
	w, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	db, err := OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	last, err := db.LastSeq(ctx)
	if err != nil || last != 1000 {
		t.Fatalf("LastSeq %d %v, want 1000", last, err)
	}
	regs, err := db.RegisteredAfter(ctx, last-10)
	if err != nil || len(regs) != 10 || regs[0].Seq != 991 || regs[9].Seq != 1000 || regs[9].Time != cp+9 {
		t.Fatalf("after %d: %v %v", last-10, regs, err)
	}
	if _, err := w.Exec(`INSERT INTO ValidPaths (path, hash, registrationTime) VALUES ('/nix/store/00000000000000000000000000000000-old', 'sha256:0', 5)`); err != nil {
		t.Fatal(err)
	}
	regs, err = db.RegisteredAfter(ctx, last)
	if err != nil || len(regs) != 1 || regs[0].Seq != 1001 || regs[0].Time != 5 {
		t.Errorf("a row registered with an old time: %v %v", regs, err)
	}
	if since, _ := db.RegisteredSince(ctx, cp); len(since) != 10 {
		t.Errorf("RegisteredSince %d rows, want the 10 after the time checkpoint", len(since))
	}
}

// TestPathInfosChunks asks for more paths than one query takes: the
// chunks run concurrently, the answer keeps the order asked, and a path
// missing from a late chunk is named.
func TestPathInfosChunks(t *testing.T) {
	const n = 5*batch + 7
	path, _ := syntheticDB(t, n)
	db, err := OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	var paths []string
	for i := n - 1; i >= 0; i-- { // reverse: not the table's order
		paths = append(paths, fmt.Sprintf("/nix/store/%032d-synthetic-%d", i, i))
	}
	infos, err := db.PathInfos(ctx, paths)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != n {
		t.Fatalf("got %d infos, want %d", len(infos), n)
	}
	for i, pi := range infos {
		if pi.Path != paths[i] || pi.NarSize != 1000 {
			t.Fatalf("info %d is %s (%d bytes), want %s", i, pi.Path, pi.NarSize, paths[i])
		}
	}
	missing := "/nix/store/00000000000000000000000000000000-missing"
	_, err = db.PathInfos(ctx, append(paths, missing))
	if !errors.Is(err, ErrNotValid) || !strings.Contains(err.Error(), missing) {
		t.Errorf("a missing path in the last chunk: %v, want ErrNotValid naming it", err)
	}
}

// BenchmarkReconcile100k is the cost of one reconcile on a store of
// 100,000 paths with 10 new ones: since a time, a scan of ValidPaths (what
// a checkpoint of an older version costs once); after the last row seen,
// the primary key.
func BenchmarkReconcile100k(b *testing.B) {
	path, cp := syntheticDB(b, 100_000)
	db, err := OpenDB(path)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		read func() ([]Registered, error)
	}{
		{"since-time", func() ([]Registered, error) { return db.RegisteredSince(ctx, cp) }},
		{"after-seq", func() ([]Registered, error) { return db.RegisteredAfter(ctx, 100_000-10) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if regs, err := bc.read(); err != nil || len(regs) != 10 {
					b.Fatalf("%d %v", len(regs), err)
				}
			}
		})
	}
}
