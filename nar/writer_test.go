package nar

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func dir(p string) *Header { return &Header{Path: p, Type: TypeDirectory} }

func file(p, data string) *Header {
	return &Header{Path: p, Type: TypeRegular, Size: int64(len(data))}
}

// TestWriterMatchesDump writes by hand the tree DumpPath reads from disk.
func TestWriterMatchesDump(t *testing.T) {
	root := t.TempDir()
	mustWrite(t, root+"/a/x", []byte("x"), 0o644)
	mustWrite(t, root+"/a/y/z", []byte("zzzzzzzzz"), 0o755)
	mustSymlink(t, "a/x", root+"/b")
	mustWrite(t, root+"/c", nil, 0o644)

	var buf bytes.Buffer
	w := NewWriter(&buf)
	steps := []struct {
		h    *Header
		data string
	}{
		{dir(""), ""},
		{dir("a"), ""},
		{file("a/x", "x"), "x"},
		{dir("a/y"), ""},
		{&Header{Path: "a/y/z", Type: TypeRegular, Size: 9, Executable: true}, "zzzzzzzzz"},
		{&Header{Path: "b", Type: TypeSymlink, LinkTarget: "a/x"}, ""},
		{file("c", ""), ""},
	}
	for _, s := range steps {
		if err := w.WriteHeader(s.h); err != nil {
			t.Fatalf("WriteHeader(%q): %v", s.h.Path, err)
		}
		// Split writes must work like one.
		for _, c := range []byte(s.data) {
			if _, err := w.Write([]byte{c}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if want := dumpBytes(t, root); !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("Writer output differs from DumpPath at byte %d", firstDiff(buf.Bytes(), want))
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := w.WriteHeader(file("d", "")); !errors.Is(err, ErrWriteAfterClose) {
		t.Errorf("WriteHeader after Close: %v", err)
	}
}

func TestWriterMisuse(t *testing.T) {
	type op struct {
		h     *Header // WriteHeader when set,
		data  string  // else Write when non-empty,
		close bool    // or Close.
	}
	tests := []struct {
		name    string
		ops     []op
		errWant string // error expected from the last op
	}{
		{"no root", []op{{close: true}}, "without a root"},
		{"first not root", []op{{h: file("a", "")}}, "first entry must be the root"},
		{"second root", []op{{h: dir("")}, {h: dir("")}}, "duplicate root"},
		{"entry under file root", []op{{h: file("", "")}, {h: file("a", "")}}, "not a directory"},
		{"entry under symlink root", []op{{h: &Header{Type: TypeSymlink, LinkTarget: "x"}}, {h: file("a", "")}}, "not a directory"},
		{"out of order", []op{{h: dir("")}, {h: file("b", "")}, {h: file("a", "")}}, "out of order"},
		{"byte order, not locale", []op{{h: dir("")}, {h: file("a", "")}, {h: file("B", "")}}, "out of order"},
		{"duplicate", []op{{h: dir("")}, {h: file("a", "")}, {h: file("a", "")}}, "duplicate entry"},
		{"duplicate dir", []op{{h: dir("")}, {h: dir("a")}, {h: dir("a")}}, "duplicate entry"},
		{"back into closed dir", []op{{h: dir("")}, {h: dir("a")}, {h: dir("b")}, {h: file("a/x", "")}}, "not open"},
		{"under a file", []op{{h: dir("")}, {h: file("a", "")}, {h: file("a/x", "")}}, "not open"},
		{"missing parent", []op{{h: dir("")}, {h: file("a/x", "")}}, "not open"},
		{"empty name", []op{{h: dir("")}, {h: file("a//b", "")}}, "empty component"},
		{"leading slash", []op{{h: dir("")}, {h: file("/a", "")}}, "empty component"},
		{"trailing slash", []op{{h: dir("")}, {h: dir("a/")}}, "empty component"},
		{"dot", []op{{h: dir("")}, {h: file(".", "")}}, `"." component`},
		{"dotdot", []op{{h: dir("")}, {h: dir("a")}, {h: file("a/..", "")}}, `".." component`},
		{"NUL", []op{{h: dir("")}, {h: file("a\x00b", "")}}, "NUL"},
		{"negative size", []op{{h: &Header{Size: -1}}}, "negative size"},
		{"executable dir", []op{{h: &Header{Type: TypeDirectory, Executable: true}}}, "regular files only"},
		{"empty link target", []op{{h: &Header{Type: TypeSymlink}}}, "target is empty"},
		{"bad type", []op{{h: &Header{Type: 7}}}, "unknown node type"},
		{"write to dir", []op{{h: dir("")}, {data: "x"}}, "outside a regular file"},
		{"write to symlink", []op{{h: &Header{Type: TypeSymlink, LinkTarget: "x"}}, {data: "x"}}, "outside a regular file"},
		{"too many bytes", []op{{h: file("", "ab")}, {data: "abc"}}, ErrWriteTooLong.Error()},
		{"too few bytes at Close", []op{{h: file("", "abc")}, {data: "ab"}, {close: true}}, "missing 1 bytes"},
		{"too few bytes at next header", []op{{h: dir("")}, {h: file("a", "abc")}, {h: file("b", "")}}, "missing 3 bytes"},
		{"too few bytes, sticky", []op{{h: dir("")}, {h: file("a", "abc")}, {h: file("b", "")}, {close: true}}, "missing 3 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := NewWriter(&bytes.Buffer{})
			var err error
			for i, o := range tc.ops {
				switch {
				case o.h != nil:
					err = w.WriteHeader(o.h)
				case o.data != "":
					_, err = w.Write([]byte(o.data))
				case o.close:
					err = w.Close()
				}
				last := i == len(tc.ops)-1
				if err != nil && !last && !strings.Contains(tc.name, "sticky") {
					t.Fatalf("op %d: unexpected error %v", i, err)
				}
			}
			if err == nil || !strings.Contains(err.Error(), tc.errWant) {
				t.Fatalf("error = %v, want one containing %q", err, tc.errWant)
			}
		})
	}
}

// A rejected header leaves the Writer usable.
func TestWriterRecoversFromBadHeader(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.WriteHeader(dir("")))
	must(w.WriteHeader(file("b", "")))
	if err := w.WriteHeader(file("a", "")); err == nil {
		t.Fatal("out-of-order header accepted")
	}
	must(w.WriteHeader(file("c", "1")))
	n, err := w.Write([]byte("12"))
	if n != 1 || !errors.Is(err, ErrWriteTooLong) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	must(w.Close())

	var want bytes.Buffer
	w2 := NewWriter(&want)
	must(w2.WriteHeader(dir("")))
	must(w2.WriteHeader(file("b", "")))
	must(w2.WriteHeader(file("c", "1")))
	_, err = w2.Write([]byte("1"))
	must(err)
	must(w2.Close())
	if !bytes.Equal(buf.Bytes(), want.Bytes()) {
		t.Fatal("output after a rejected header differs")
	}
}

type failWriter struct{ after int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errors.New("disk full")
	}
	f.after--
	return len(p), nil
}

func TestWriterUnderlyingErrorIsSticky(t *testing.T) {
	w := NewWriter(&failWriter{after: 1})
	if err := w.WriteHeader(dir("")); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteHeader(file("a", "x")); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("WriteHeader: %v", err)
	}
	if _, err := w.Write([]byte("x")); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Write: %v", err)
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close succeeded after a write error")
	}
}
