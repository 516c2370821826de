package nar

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
)

// narOf writes a NAR from headers (file contents are "x" repeated Size
// times) and returns it.
func narOf(t testing.TB, hs ...Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for i := range hs {
		if err := w.WriteHeader(&hs[i]); err != nil {
			t.Fatal(err)
		}
		if hs[i].Type == TypeRegular {
			if _, err := w.Write(bytes.Repeat([]byte("x"), int(hs[i].Size))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// parseAll parses data in chunks of n bytes (0: at once).
func parseAll(data []byte, n int) (*Listing, error) {
	p := NewParser()
	if n == 0 {
		n = len(data) + 1
	}
	for len(data) > 0 {
		k := min(n, len(data))
		if _, err := p.Write(data[:k]); err != nil {
			return nil, err
		}
		data = data[k:]
	}
	return p.Listing()
}

func TestListingTable(t *testing.T) {
	tests := []struct {
		name string
		hs   []Header
		want string
	}{
		{"regular root", []Header{{Type: TypeRegular, Size: 5}},
			`{"version":1,"root":{"type":"regular","size":5,"narOffset":96}}`},
		{"empty executable root", []Header{{Type: TypeRegular, Executable: true}},
			`{"version":1,"root":{"type":"regular","size":0,"executable":true,"narOffset":128}}`},
		{"symlink root", []Header{{Type: TypeSymlink, LinkTarget: "a \"q\" \\ \n\x01 ü"}},
			`{"version":1,"root":{"type":"symlink","target":"a \"q\" \\ \n\u0001 ü"}}`},
		{"empty dir", []Header{{Type: TypeDirectory}},
			`{"version":1,"root":{"type":"directory","entries":{}}}`},
		{"tree", []Header{
			{Type: TypeDirectory},
			{Path: "a", Type: TypeDirectory},
			{Path: "a/b", Type: TypeRegular, Size: 9, Executable: true},
			{Path: "a/c", Type: TypeDirectory},
			{Path: "l", Type: TypeSymlink, LinkTarget: "a/b"},
			{Path: "z", Type: TypeRegular, Size: 0},
		}, `{"version":1,"root":{"type":"directory","entries":{"a":{"type":"directory","entries":{"b":{"type":"regular","size":9,"executable":true,"narOffset":400},"c":{"type":"directory","entries":{}}}},"l":{"type":"symlink","target":"a/b"},"z":{"type":"regular","size":0,"narOffset":992}}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := narOf(t, tt.hs...)
			for _, chunk := range []int{0, 1, 3, 8, 13} {
				l, err := parseAll(data, chunk)
				if err != nil {
					t.Fatalf("chunk %d: %v", chunk, err)
				}
				got, _ := l.MarshalJSON()
				if string(got) != tt.want {
					t.Fatalf("chunk %d:\n got %s\nwant %s", chunk, got, tt.want)
				}
				if !json.Valid(got) {
					t.Fatalf("not valid JSON: %s", got)
				}
			}
			// narOffset points at the contents.
			l, _ := parseAll(data, 0)
			checkOffsets(t, data, l.Root)
		})
	}
}

func checkOffsets(t *testing.T, data []byte, n *ListingNode) {
	t.Helper()
	switch n.Type {
	case TypeRegular:
		if n.NarOffset < 8 || n.NarOffset+n.Size > int64(len(data)) {
			t.Fatalf("narOffset %d size %d out of a %d-byte NAR", n.NarOffset, n.Size, len(data))
		}
		if got := int64(bytesLE(data[n.NarOffset-8 : n.NarOffset])); got != n.Size {
			t.Fatalf("the 8 bytes before narOffset %d say %d, not the size %d", n.NarOffset, got, n.Size)
		}
	case TypeDirectory:
		for _, c := range n.Entries {
			checkOffsets(t, data, c)
		}
	}
}

func bytesLE(b []byte) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

func TestListingRejects(t *testing.T) {
	good := narOf(t, Header{Type: TypeDirectory}, Header{Path: "a", Type: TypeRegular, Size: 3}, Header{Path: "b", Type: TypeSymlink, LinkTarget: "a"})
	tok := func(s string) []byte {
		var w Writer
		w.token(s)
		return w.buf
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	unsorted := cat(tok(Magic), tok("("), tok("type"), tok("directory"),
		tok("entry"), tok("("), tok("name"), tok("b"), tok("node"), tok("("), tok("type"), tok("symlink"), tok("target"), tok("x"), tok(")"), tok(")"),
		tok("entry"), tok("("), tok("name"), tok("a"), tok("node"), tok("("), tok("type"), tok("symlink"), tok("target"), tok("x"), tok(")"), tok(")"),
		tok(")"))
	badPad := append([]byte(nil), good...)
	badPad[len(tok(Magic))-1] = 1 // "nix-archive-1" is 13 bytes: 3 of padding
	cases := map[string][]byte{
		"empty":         nil,
		"truncated":     good[:len(good)-8],
		"truncated pad": good[:len(good)-1],
		"trailing":      append(append([]byte(nil), good...), 0),
		"bad magic":     cat(tok("nix-archive-2")),
		"bad type":      cat(tok(Magic), tok("("), tok("type"), tok("fifo")),
		"unsorted":      unsorted,
		"dot name":      cat(tok(Magic), tok("("), tok("type"), tok("directory"), tok("entry"), tok("("), tok("name"), tok(".."), tok("node")),
		"slash name":    cat(tok(Magic), tok("("), tok("type"), tok("directory"), tok("entry"), tok("("), tok("name"), tok("a/b"), tok("node")),
		"empty target":  cat(tok(Magic), tok("("), tok("type"), tok("symlink"), tok("target"), tok("")),
		"bad padding":   badPad,
		"huge name":     cat(tok(Magic), tok("("), tok("type"), tok("directory"), tok("entry"), tok("("), tok("name"), tok(strings.Repeat("n", maxTokenLen+1))),
	}
	for name, data := range cases {
		for _, chunk := range []int{0, 1, 7} {
			if l, err := parseAll(data, chunk); err == nil {
				t.Errorf("%s (chunk %d): accepted, listing %+v", name, chunk, l.Root)
			}
		}
	}
	if _, err := parseAll(good, 0); err != nil {
		t.Fatalf("good NAR: %v", err)
	}
}

// TestListingOfDump checks the listing of a real tree's NAR: every file
// is where narOffset says, with its size and executable bit.
func TestListingOfDump(t *testing.T) {
	root := t.TempDir() + "/root"
	makeTree(t, root, 300<<10)
	var nar bytes.Buffer
	p := NewParser()
	if err := DumpPath(io.MultiWriter(&nar, p), root); err != nil {
		t.Fatal(err)
	}
	l, err := p.Listing()
	if err != nil {
		t.Fatal(err)
	}
	if p.Size() != int64(nar.Len()) {
		t.Fatalf("Size %d, NAR %d bytes", p.Size(), nar.Len())
	}
	data := nar.Bytes()
	var walk func(dir string, n *ListingNode)
	walk = func(dir string, n *ListingNode) {
		fi, err := os.Lstat(dir)
		if err != nil {
			t.Fatal(err)
		}
		switch n.Type {
		case TypeRegular:
			want, _ := os.ReadFile(dir)
			if got := data[n.NarOffset : n.NarOffset+n.Size]; !bytes.Equal(got, want) {
				t.Fatalf("%s: contents at narOffset differ", dir)
			}
			if exec := fi.Mode()&0o100 != 0; exec != n.Executable {
				t.Fatalf("%s: executable %v in the listing", dir, n.Executable)
			}
		case TypeSymlink:
			if target, _ := os.Readlink(dir); target != n.Target {
				t.Fatalf("%s: target %q, listed %q", dir, target, n.Target)
			}
		case TypeDirectory:
			ents, _ := os.ReadDir(dir)
			if len(ents) != len(n.Entries) {
				t.Fatalf("%s: %d entries, listed %d", dir, len(ents), len(n.Entries))
			}
			for name, c := range n.Entries {
				walk(dir+"/"+name, c)
			}
		}
	}
	walk(root, l.Root)
}

func TestDebugInfoLinks(t *testing.T) {
	id := "cdef0123456789abcdef0123456789abcdef01"
	data := narOf(t,
		Header{Type: TypeDirectory},
		Header{Path: "lib", Type: TypeDirectory},
		Header{Path: "lib/debug", Type: TypeDirectory},
		Header{Path: "lib/debug/.build-id", Type: TypeDirectory},
		Header{Path: "lib/debug/.build-id/AB", Type: TypeDirectory}, // not lower-case hex
		Header{Path: "lib/debug/.build-id/AB/" + id + ".debug", Type: TypeRegular, Size: 1},
		Header{Path: "lib/debug/.build-id/ab", Type: TypeDirectory},
		Header{Path: "lib/debug/.build-id/ab/" + id[:37] + ".debug", Type: TypeRegular, Size: 1}, // short
		Header{Path: "lib/debug/.build-id/ab/" + id[:37] + "0.debug.link", Type: TypeSymlink, LinkTarget: "x"},
		Header{Path: "lib/debug/.build-id/ab/" + id, Type: TypeRegular, Size: 1}, // no .debug
		Header{Path: "lib/debug/.build-id/ab/" + id + ".debug", Type: TypeRegular, Size: 1},
		Header{Path: "lib/debug/.build-id/cd", Type: TypeDirectory},
		Header{Path: "lib/debug/.build-id/cd/" + id + ".debug", Type: TypeSymlink, LinkTarget: "x"}, // not regular
	)
	l, err := parseAll(data, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := l.DebugInfoLinks("nar/abc.nar.xz")
	want := []DebugInfoLink{{
		Key:  "debuginfo/ab" + id + ".debug",
		Body: []byte(`{"archive":"../nar/abc.nar.xz","member":"lib/debug/.build-id/ab/` + id + `.debug"}`),
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	if l := (&Listing{Root: &ListingNode{Type: TypeRegular}}); l.DebugInfoLinks("x") != nil {
		t.Fatal("links for a regular file")
	}
}
