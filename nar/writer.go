package nar

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// NodeType is the type of a NAR node.
type NodeType int

const (
	TypeRegular NodeType = iota
	TypeDirectory
	TypeSymlink
)

func (t NodeType) String() string {
	switch t {
	case TypeRegular:
		return "regular"
	case TypeDirectory:
		return "directory"
	case TypeSymlink:
		return "symlink"
	}
	return fmt.Sprintf("NodeType(%d)", int(t))
}

// Header describes one NAR entry.
type Header struct {
	Path       string // slash-separated path relative to the root; "" is the root node
	Type       NodeType
	Executable bool   // regular files only
	Size       int64  // regular files: exact number of bytes that Write will receive
	LinkTarget string // symlinks
}

var (
	ErrWriteTooLong    = errors.New("nar: write exceeds the size in the header")
	ErrWriteAfterClose = errors.New("nar: write after close")
)

// Magic is the string every NAR starts with.
const Magic = "nix-archive-1"

type openDir struct {
	path string // "" for the root
	last string // name of the last child written, "" if none
}

// Writer writes a NAR stream. Entries must come in NAR order: depth-first,
// with each directory's children sorted byte-wise.
type Writer struct {
	w       io.Writer
	buf     []byte    // pending tokens, flushed once per call
	dirs    []openDir // open directories, root first
	started bool      // root header written
	inFile  bool      // a regular file is open
	file    string    // its path
	size    int64     // its size
	remain  int64     // bytes still due for it
	padding int       // zero bytes after the open file's contents
	err     error     // sticky
}

// NewWriter returns a Writer that writes a NAR to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, buf: make([]byte, 0, 512)}
}

func (w *Writer) token(s string) {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
	w.buf = append(w.buf, n[:]...)
	w.buf = append(w.buf, s...)
	w.buf = append(w.buf, zeros[:pad(len(s))]...)
}

var zeros [8]byte

func pad(n int) int { return (8 - n%8) % 8 }

func (w *Writer) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.w.Write(w.buf)
	w.buf = w.buf[:0]
	if err != nil {
		w.err = err
	}
	return err
}

// finishFile closes the open regular file, if any.
func (w *Writer) finishFile() error {
	if !w.inFile {
		return nil
	}
	if w.remain != 0 {
		w.err = fmt.Errorf("nar: %q: got %d of the %d bytes in its header, missing %d bytes", w.file, w.size-w.remain, w.size, w.remain)
		return w.err
	}
	w.buf = append(w.buf, zeros[:w.padding]...)
	w.inFile = false
	w.endNode()
	return nil
}

// endNode closes the node just written and, below the root, its entry.
func (w *Writer) endNode() {
	w.token(")")
	if len(w.dirs) > 0 {
		w.token(")")
	}
}

// popDirsTo closes open directories until depth n remain.
func (w *Writer) popDirsTo(n int) {
	for len(w.dirs) > n {
		w.dirs = w.dirs[:len(w.dirs)-1]
		w.endNode()
	}
}

func checkPath(p string) error {
	if p == "" {
		return nil
	}
	for _, name := range strings.Split(p, "/") {
		switch {
		case name == "":
			return fmt.Errorf("nar: path %q has an empty component", p)
		case name == "." || name == "..":
			return fmt.Errorf("nar: path %q has a %q component", p, name)
		case strings.IndexByte(name, 0) >= 0:
			return fmt.Errorf("nar: path %q contains a NUL byte", p)
		}
	}
	return nil
}

func checkHeader(h *Header) error {
	if err := checkPath(h.Path); err != nil {
		return err
	}
	switch h.Type {
	case TypeRegular:
		if h.Size < 0 {
			return fmt.Errorf("nar: %q: negative size %d", h.Path, h.Size)
		}
		if h.LinkTarget != "" {
			return fmt.Errorf("nar: %q: LinkTarget set on a regular file", h.Path)
		}
	case TypeDirectory, TypeSymlink:
		if h.Executable || h.Size != 0 {
			return fmt.Errorf("nar: %q: Executable and Size are for regular files only", h.Path)
		}
		if h.Type == TypeDirectory && h.LinkTarget != "" {
			return fmt.Errorf("nar: %q: LinkTarget set on a directory", h.Path)
		}
		if h.Type == TypeSymlink && (h.LinkTarget == "" || strings.IndexByte(h.LinkTarget, 0) >= 0) {
			return fmt.Errorf("nar: %q: symlink target is empty or contains a NUL byte", h.Path)
		}
	default:
		return fmt.Errorf("nar: %q: unknown node type %v", h.Path, h.Type)
	}
	return nil
}

// WriteHeader starts a new entry. For a regular file, exactly h.Size bytes
// must then be written with Write.
func (w *Writer) WriteHeader(h *Header) error {
	if w.err != nil {
		return w.err
	}
	if err := checkHeader(h); err != nil {
		return err
	}
	if !w.started {
		if h.Path != "" {
			return fmt.Errorf("nar: first entry must be the root \"\", got %q", h.Path)
		}
		w.started = true
		w.token(Magic)
		return w.openNode(h)
	}
	if len(w.dirs) == 0 {
		// The root directory stays open until Close.
		return fmt.Errorf("nar: %q: the root is not a directory, it can have no entries", h.Path)
	}
	if h.Path == "" {
		return errors.New("nar: duplicate root entry")
	}
	parent, name := "", h.Path
	if i := strings.LastIndexByte(h.Path, '/'); i >= 0 {
		parent, name = h.Path[:i], h.Path[i+1:]
	}
	// The parent must be one of the open directories; any deeper ones are
	// finished.
	depth := -1
	for i := len(w.dirs) - 1; i >= 0; i-- {
		if w.dirs[i].path == parent {
			depth = i
			break
		}
	}
	if depth < 0 {
		return fmt.Errorf("nar: %q: parent directory %q is not open (entries must be depth-first, sorted, under a directory entry)", h.Path, parent)
	}
	if d := w.dirs[depth]; d.last != "" && name <= d.last {
		if name == d.last {
			return fmt.Errorf("nar: %q: duplicate entry", h.Path)
		}
		return fmt.Errorf("nar: %q: out of order, must sort byte-wise after %q", h.Path, d.last)
	}
	if err := w.finishFile(); err != nil {
		return err
	}
	w.popDirsTo(depth + 1)
	w.dirs[depth].last = name
	w.token("entry")
	w.token("(")
	w.token("name")
	w.token(name)
	w.token("node")
	return w.openNode(h)
}

// openNode writes the node's opening tokens and flushes.
func (w *Writer) openNode(h *Header) error {
	w.token("(")
	w.token("type")
	switch h.Type {
	case TypeRegular:
		w.token("regular")
		if h.Executable {
			w.token("executable")
			w.token("")
		}
		w.token("contents")
		w.buf = binary.LittleEndian.AppendUint64(w.buf, uint64(h.Size))
		w.inFile, w.file, w.size, w.remain = true, h.Path, h.Size, h.Size
		w.padding = pad(int(h.Size % 8))
	case TypeSymlink:
		w.token("symlink")
		w.token("target")
		w.token(h.LinkTarget)
		w.endNode()
	case TypeDirectory:
		w.token("directory")
		w.dirs = append(w.dirs, openDir{path: h.Path})
	}
	return w.flush()
}

// Write writes contents of the current regular file. Writing past the
// header's Size writes what fits and returns ErrWriteTooLong.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if !w.inFile {
		return 0, errors.New("nar: Write outside a regular file")
	}
	tooLong := false
	if int64(len(p)) > w.remain {
		p, tooLong = p[:w.remain], true
	}
	n, err := w.w.Write(p)
	w.remain -= int64(n)
	if err != nil {
		w.err = err
		return n, err
	}
	if tooLong {
		return n, ErrWriteTooLong
	}
	return n, nil
}

// Close finishes the archive. It does not close the underlying writer.
func (w *Writer) Close() error {
	if errors.Is(w.err, ErrWriteAfterClose) {
		return nil
	}
	if w.err != nil {
		return w.err
	}
	if !w.started {
		return errors.New("nar: Close without a root entry")
	}
	if err := w.finishFile(); err != nil {
		return err
	}
	w.popDirsTo(0)
	if err := w.flush(); err != nil {
		return err
	}
	w.err = ErrWriteAfterClose
	return nil
}
