package file

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixpushd/nixpushd/cache"
)

func TestFileTarget(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	f, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := f.Exists(ctx, "x.narinfo"); ok || err != nil {
		t.Fatalf("Exists on empty cache = %v, %v", ok, err)
	}
	if err := f.Put(ctx, "nar/abc.nar.xz", strings.NewReader("hello"), 5, cache.TypeNAR); err != nil {
		t.Fatal(err)
	}
	if ok, _ := f.Exists(ctx, "nar/abc.nar.xz"); !ok {
		t.Error("object missing after Put")
	}
	// A short body must not leave an object behind.
	if err := f.Put(ctx, "short", strings.NewReader("hi"), 5, cache.TypeNAR); err == nil {
		t.Error("short body: want error")
	}
	if ok, _ := f.Exists(ctx, "short"); ok {
		t.Error("short body left an object")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
	for _, key := range []string{"../escape", "/abs", "a/../../b", ""} {
		if err := f.Put(ctx, key, strings.NewReader(""), 0, ""); err == nil {
			t.Errorf("Put(%q): want error", key)
		}
	}
	if _, err := New("relative/dir"); err == nil {
		t.Error("relative dir: want error")
	}
	if _, err := New(filepath.Join(dir, "c") + "?compression=xz"); err == nil {
		t.Error("query parameters: want error")
	}
}

// TestFilePutObjects checks what Put leaves behind: the latest body under
// the key (a Put over an object replaces it, as verify --repair needs),
// readable by other users as Nix clients are (0644 less the umask), and
// no temporary files; two Files on one directory never share a
// temporary name.
func TestFilePutObjects(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	f, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ key, body string }{
		{"nar/x.nar.zst", "first"},
		{"nar/x.nar.zst", "second, longer"},
		{"abc.narinfo", "StorePath: x\n"},
		{"deep/er/key", ""},
	} {
		if err := f.Put(ctx, tc.key, strings.NewReader(tc.body), int64(len(tc.body)), ""); err != nil {
			t.Fatalf("Put(%s): %v", tc.key, err)
		}
		got, err := f.Get(ctx, tc.key)
		if err != nil || string(got) != tc.body {
			t.Fatalf("Get(%s) = %q, %v; want %q", tc.key, got, err, tc.body)
		}
		fi, err := os.Stat(filepath.Join(dir, tc.key))
		if err != nil {
			t.Fatal(err)
		}
		if want := 0o644 &^ umask(); fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", tc.key, fi.Mode().Perm(), want)
		}
	}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp") {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})
	g, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if f.tmpPrefix() == g.tmpPrefix() {
		t.Errorf("two Files share the temporary prefix %q", f.tmpPrefix())
	}
}

// umask reads the process's umask without changing it (Linux 4.7+);
// elsewhere it assumes the usual 022.
func umask() os.FileMode {
	raw, err := os.ReadFile("/proc/self/status")
	if err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if v, ok := strings.CutPrefix(line, "Umask:"); ok {
				var m os.FileMode
				if _, err := fmt.Sscanf(strings.TrimSpace(v), "%o", &m); err == nil {
					return m
				}
			}
		}
	}
	return 0o022
}
