package nar

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustWrite(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is filtered by the umask.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t testing.TB, target, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

// makeTree builds a tree with every feature NAR has and the corners that
// are easy to get wrong.
func makeTree(t testing.TB, root string, bigSize int) {
	t.Helper()
	rng := rand.New(rand.NewSource(1))
	random := func(n int) []byte {
		b := make([]byte, n)
		rng.Read(b)
		return b
	}
	mustWrite(t, root+"/plain", []byte("hello\n"), 0o644)
	mustWrite(t, root+"/exec", []byte("#!/bin/sh\necho hi\n"), 0o755)
	mustWrite(t, root+"/owner-x-only", []byte("x"), 0o700)
	mustWrite(t, root+"/group-x-only", []byte("x"), 0o654) // not executable for Nix
	mustWrite(t, root+"/empty", nil, 0o644)
	mustWrite(t, root+"/empty-exec", nil, 0o755)
	for n := 1; n <= 17; n++ { // every padding length
		mustWrite(t, fmt.Sprintf("%s/sizes/%02d", root, n), random(n), 0o644)
	}
	mustWrite(t, root+"/big", random(bigSize), 0o644)

	mustSymlink(t, "plain", root+"/link-rel")
	mustSymlink(t, "does/not/exist", root+"/link-dangling")
	mustSymlink(t, "/etc/passwd", root+"/link-abs")
	mustSymlink(t, "sizes", root+"/link-dir")
	mustSymlink(t, "../../..", root+"/link-up")
	mustSymlink(t, strings.Repeat("long/", 60)+"end", root+"/link-long")
	mustSymlink(t, "odd \xff target ü", root+"/link-odd")

	if err := os.MkdirAll(root+"/empty-dir", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(root+"/nested-empty/a/b/c", 0o755); err != nil {
		t.Fatal(err)
	}

	deep := root + "/deep"
	for i := 0; i < 50; i++ {
		deep += fmt.Sprintf("/d%02d", i)
	}
	mustWrite(t, deep+"/leaf", []byte("bottom"), 0o644)

	// Byte order differs from locale order for all of these.
	for _, name := range []string{
		"a", "B", "b", "A", "_under", "-dash", "~tilde", "Z", "z", ".hidden", "..dots",
		"with space", " leading", "trailing ", "tab\there", "new\nline",
		"é", "e", "ä", "日本語", "\xff", "\xfe\xff", "a\xffb", "#", "a.b", "a-b", "a_b", "a,b",
		"10", "9", "0010",
	} {
		mustWrite(t, root+"/names/"+name, []byte(name), 0o644)
	}
	mustWrite(t, root+"/names/dir-vs-file/x", []byte("1"), 0o644)
	mustWrite(t, root+"/names/dir-vs-file.txt", []byte("2"), 0o644) // '.' < '/': order by name, not path

	for i := 0; i < 2000; i++ {
		mustWrite(t, fmt.Sprintf("%s/many/f%d", root, i), []byte{byte(i)}, 0o644)
	}
}

func dumpBytes(t testing.TB, path string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := DumpPath(&buf, path); err != nil {
		t.Fatalf("DumpPath(%s): %v", path, err)
	}
	return buf.Bytes()
}

func firstDiff(a, b []byte) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestDumpPathMatchesNix(t *testing.T) {
	requireNix(t)
	dir := t.TempDir()
	tree := dir + "/tree"
	makeTree(t, tree, 3<<20+5)

	cases := map[string]string{
		"tree":            tree,
		"regular file":    tree + "/plain",
		"executable file": tree + "/exec",
		"empty file":      tree + "/empty",
		"top symlink":     tree + "/link-dir", // archived as a link, not followed
		"dangling link":   tree + "/link-dangling",
		"empty dir":       tree + "/empty-dir",
		"deep":            tree + "/deep",
		"names":           tree + "/names",
		"big file":        tree + "/big",
	}
	for name, path := range cases {
		t.Run(name, func(t *testing.T) {
			got := dumpBytes(t, path)
			want := runCmd(t, nil, "nix-store", "--dump", path)
			if !bytes.Equal(got, want) {
				i := firstDiff(got, want)
				t.Fatalf("NAR of %s differs from nix-store --dump at byte %d (len %d vs %d)\nours:  %q\nnix's: %q",
					path, i, len(got), len(want), got[max(0, i-64):min(len(got), i+64)], want[max(0, i-64):min(len(want), i+64)])
			}
			sum := sha256.Sum256(got)
			ours := NewSHA256(sum[:]).SRI()
			nixHash := strings.TrimSpace(string(nixCmd(t, nil, "hash", "path", path)))
			if ours != nixHash {
				t.Errorf("sha256 of NAR = %s, nix hash path says %s", ours, nixHash)
			}
		})
	}
}

// TestDumpPathFormat checks the exact bytes of a small NAR without Nix.
func TestDumpPathFormat(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, dir+"/f", []byte("hi"), 0o755)
	mustSymlink(t, "f", dir+"/l")

	var want bytes.Buffer
	tok := func(s string) {
		var n [8]byte
		n[0] = byte(len(s))
		want.Write(n[:])
		want.WriteString(s)
		want.Write(make([]byte, (8-len(s)%8)%8))
	}
	for _, s := range []string{"nix-archive-1", "(", "type", "directory",
		"entry", "(", "name", "f", "node", "(", "type", "regular", "executable", "", "contents", "hi", ")", ")",
		"entry", "(", "name", "l", "node", "(", "type", "symlink", "target", "f", ")", ")",
		")"} {
		tok(s)
	}
	if got := dumpBytes(t, dir); !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("got  %q\nwant %q", got, want.Bytes())
	}
}

func TestDumpPathErrors(t *testing.T) {
	dir := t.TempDir()
	if err := DumpPath(&bytes.Buffer{}, dir+"/missing"); err == nil || !strings.Contains(err.Error(), dir+"/missing") {
		t.Errorf("missing path: error %v should name the path", err)
	}

	// /proc files claim size 0 but have content: the growth check sees it.
	if _, err := os.Lstat("/proc/self/status"); err == nil {
		err := DumpPath(&bytes.Buffer{}, "/proc/self/status")
		if err == nil || !strings.Contains(err.Error(), "/proc/self/status") || !strings.Contains(err.Error(), "grew") {
			t.Errorf("growing file: error %v", err)
		}
	}

	mustWrite(t, dir+"/shrinks", bytes.Repeat([]byte("x"), 1000), 0o644)
	afterOpenHook = func(path string) {
		if strings.HasSuffix(path, "/shrinks") {
			if err := os.Truncate(path, 10); err != nil {
				t.Error(err)
			}
		}
	}
	defer func() { afterOpenHook = nil }()
	err := DumpPath(&bytes.Buffer{}, dir)
	if err == nil || !strings.Contains(err.Error(), dir+"/shrinks") || !strings.Contains(err.Error(), "shrank") {
		t.Errorf("shrinking file: error %v", err)
	}
}

// TestDumpPathReadSizes checks files around the copy buffer's size: each
// read asks for a byte more than is due, so the last read of a file that
// fills the buffer exactly is the end-of-file probe.
func TestDumpPathReadSizes(t *testing.T) {
	dir := t.TempDir()
	bufSize := len(*copyBufs.Get().(*[]byte))
	for _, size := range []int{0, 1, 8, bufSize - 1, bufSize, bufSize + 1, 2 * bufSize, 2*bufSize + 3} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			content := make([]byte, size)
			for i := range content {
				content[i] = byte(i * 7)
			}
			path := filepath.Join(dir, fmt.Sprint(size))
			mustWrite(t, path, content, 0o644)
			var want bytes.Buffer
			w := NewWriter(&want)
			if err := w.WriteHeader(&Header{Type: TypeRegular, Size: int64(size)}); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(content); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if got := dumpBytes(t, path); !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("NAR of a %d-byte file differs from the Writer's (%d bytes vs %d)", size, len(got), want.Len())
			}
		})
	}
}
