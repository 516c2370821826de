package cachekeys

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/file"
	"github.com/nixpushd/nixpushd/internal/cachetest"
	"github.com/nixpushd/nixpushd/nar"
)

func pub(t *testing.T, name string) *nar.PublicKey {
	t.Helper()
	k, err := nar.GenerateSecretKey(name)
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

// targets are the backends the records must work on.
func targets(t *testing.T) map[string]cache.Target {
	d, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return map[string]cache.Target{"mem": cachetest.NewMem(), "file": d}
}

func TestRecord(t *testing.T) {
	ctx := context.Background()
	for name, tg := range targets(t) {
		t.Run(name, func(t *testing.T) {
			a := pub(t, "host-a-nixpushd-1")
			rec, err := Record(ctx, tg, a)
			if err != nil || !rec {
				t.Fatalf("first Record = %v, %v; want recorded", rec, err)
			}
			b, err := tg.Get(ctx, "nixpushd/keys/host-a-nixpushd-1")
			if err != nil || string(b) != a.String()+"\n" {
				t.Fatalf("record = %q, %v; want %q", b, err, a.String()+"\n")
			}
			// The same key again: nothing to do.
			if rec, err := Record(ctx, tg, a); err != nil || rec {
				t.Fatalf("same key = %v, %v; want not recorded, no error", rec, err)
			}
			// Another key of the same name: refused, the record kept.
			other := pub(t, "host-a-nixpushd-1")
			_, err = Record(ctx, tg, other)
			var ce *ConflictError
			if !errors.As(err, &ce) || !ce.Have.Key.Equal(a.Key) {
				t.Fatalf("conflicting key: err = %v, want a ConflictError with the recorded key", err)
			}
			for _, want := range []string{"already has a key named host-a-nixpushd-1 with a different public key", "--key-name", tg.String()} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if b, _ := tg.Get(ctx, ObjectKey(a.Name)); string(b) != a.String()+"\n" {
				t.Errorf("record after the conflict = %q, want the first key", b)
			}
			// A second name is its own object.
			bk := pub(t, "host-b-nixpushd-1")
			if rec, err := Record(ctx, tg, bk); err != nil || !rec {
				t.Fatalf("second name = %v, %v", rec, err)
			}
			got, err := List(ctx, tg)
			if err != nil || len(got) != 2 || got[0].String() != a.String() || got[1].String() != bk.String() {
				t.Fatalf("List = %v, %v; want [%s %s]", got, err, a, bk)
			}
		})
	}
}

func TestLookupAbsentAndBad(t *testing.T) {
	ctx := context.Background()
	m := cachetest.NewMem()
	if pk, err := Lookup(ctx, m, "nobody-1"); pk != nil || err != nil {
		t.Fatalf("absent: %v, %v", pk, err)
	}
	// Names from signatures may be anything: never a path outside Prefix.
	for _, n := range []string{"", "..", "a/b", "x y"} {
		if pk, err := Lookup(ctx, m, n); pk != nil || err != nil {
			t.Errorf("Lookup(%q) = %v, %v; want nil, nil", n, pk, err)
		}
		if _, err := Record(ctx, m, &nar.PublicKey{Name: n, Key: pub(t, "x").Key}); err == nil {
			t.Errorf("Record(%q) accepted", n)
		}
	}
	a := pub(t, "a-1")
	m.Objects[ObjectKey("b-1")] = []byte(a.String() + "\n") // a's key under b's name
	m.Objects[ObjectKey("c-1")] = []byte("garbage\n")
	for name, want := range map[string]string{"b-1": "holds the key a-1, not one named b-1", "c-1": "NAME:BASE64"} {
		_, err := Lookup(ctx, m, name)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), ObjectKey(name)) {
			t.Errorf("Lookup(%s) err = %v, want it to name the object and say %q", name, err, want)
		}
	}
	if _, err := List(ctx, m); err == nil {
		t.Error("List with bad records: no error")
	}
}

// racer is a cache where another machine writes its key of the same
// name right after ours: the last writer stays, and Record must notice.
type racer struct {
	*cachetest.Mem
	theirs []byte
}

func (r *racer) Put(ctx context.Context, key string, body io.Reader, size int64, ct string) error {
	if err := r.Mem.Put(ctx, key, body, size, ct); err != nil {
		return err
	}
	return r.Mem.Put(ctx, key, bytes.NewReader(r.theirs), int64(len(r.theirs)), ct)
}

func TestRecordRaceLost(t *testing.T) {
	theirs := pub(t, "h-1")
	r := &racer{Mem: cachetest.NewMem(), theirs: []byte(theirs.String() + "\n")}
	_, err := Record(context.Background(), r, pub(t, "h-1"))
	var ce *ConflictError
	if !errors.As(err, &ce) || !ce.Have.Key.Equal(theirs.Key) {
		t.Fatalf("lost race: err = %v, want a ConflictError naming their key", err)
	}
}

// A target that cannot list has no records List can find.
type noList struct{ cache.Target }

func TestListWithoutLister(t *testing.T) {
	m := cachetest.NewMem()
	if _, err := Record(context.Background(), m, pub(t, "a-1")); err != nil {
		t.Fatal(err)
	}
	if got, err := List(context.Background(), noList{m}); got != nil || err != nil {
		t.Fatalf("List without Lister = %v, %v", got, err)
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add("a-1", []byte("a-1:"+strings.Repeat("A", 43)+"=\n"))
	f.Add("a-1", []byte("b-1:xx"))
	f.Fuzz(func(t *testing.T, name string, b []byte) {
		pk, err := parseRecord(name, b)
		if err == nil && (pk.Name != name || len(pk.Key) != 32) {
			t.Fatalf("parseRecord(%q, %q) = %v", name, b, pk)
		}
	})
}
