package upload

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestFileTarget(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	f, err := NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := f.Exists(ctx, "x.narinfo"); ok || err != nil {
		t.Fatalf("Exists on empty cache = %v, %v", ok, err)
	}
	if err := f.Put(ctx, "nar/abc.nar.xz", strings.NewReader("hello"), 5, TypeNAR); err != nil {
		t.Fatal(err)
	}
	if ok, _ := f.Exists(ctx, "nar/abc.nar.xz"); !ok {
		t.Error("object missing after Put")
	}
	// A short body must not leave an object behind.
	if err := f.Put(ctx, "short", strings.NewReader("hi"), 5, TypeNAR); err == nil {
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
	if _, err := NewFile("relative/dir"); err == nil {
		t.Error("relative dir: want error")
	}
	if _, err := NewFile(filepath.Join(dir, "c") + "?compression=xz"); err == nil {
		t.Error("query parameters: want error")
	}
}
