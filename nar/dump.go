package nar

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sync"
)

// DumpPath writes the NAR serialization of the file, directory or symlink at
// path to w, byte-for-byte as `nix-store --dump` does. A symlink at path is
// archived as a symlink, not followed. File contents are streamed.
func DumpPath(w io.Writer, path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("nar: %w", err)
	}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	d := dumper{nw: NewWriter(w), buf: *buf}
	if err := d.dump(path, "", fi); err != nil {
		return err
	}
	return d.nw.Close()
}

// copyBufs recycles file copy buffers: a system closure is mostly small
// paths, and a fresh 128 KiB per path is most of what dumping allocates.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 128<<10); return &b }}

type dumper struct {
	nw  *Writer
	buf []byte
}

// afterOpenHook lets tests change a file between stat and read.
var afterOpenHook func(path string)

func (d *dumper) dump(full, rel string, fi fs.FileInfo) error {
	mode := fi.Mode()
	switch {
	case mode.IsRegular():
		return d.file(full, rel, fi)
	case mode.IsDir():
		return d.dir(full, rel)
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(full)
		if err != nil {
			return fmt.Errorf("nar: %w", err)
		}
		return d.header(full, &Header{Path: rel, Type: TypeSymlink, LinkTarget: target})
	}
	return fmt.Errorf("nar: %s: cannot archive a %s, NAR holds only regular files, directories and symlinks", full, fileKind(mode))
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe (FIFO)"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	}
	return "special file (mode " + m.String() + ")"
}

// header wraps Writer errors with the file name.
func (d *dumper) header(full string, h *Header) error {
	if err := d.nw.WriteHeader(h); err != nil {
		return fmt.Errorf("nar: %s: %w", full, err)
	}
	return nil
}

func (d *dumper) dir(full, rel string) error {
	if err := d.header(full, &Header{Path: rel, Type: TypeDirectory}); err != nil {
		return err
	}
	f, err := os.Open(full)
	if err != nil {
		return fmt.Errorf("nar: %w", err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("nar: %w", err)
	}
	// NAR order is byte-wise, never locale order.
	slices.Sort(names)
	for _, name := range names {
		cfull := full + "/" + name
		cfi, err := os.Lstat(cfull)
		if err != nil {
			return fmt.Errorf("nar: %w", err)
		}
		crel := name
		if rel != "" {
			crel = rel + "/" + name
		}
		if err := d.dump(cfull, crel, cfi); err != nil {
			return err
		}
	}
	return nil
}

func (d *dumper) file(full, rel string, fi fs.FileInfo) error {
	f, size, exec, err := openRegular(full, fi)
	if errors.Is(err, errReplaced) {
		// Guard against the name now pointing at something else.
		return fmt.Errorf("nar: %s: %w", full, err)
	}
	if err != nil {
		return fmt.Errorf("nar: %w", err)
	}
	defer f.Close()
	if afterOpenHook != nil {
		afterOpenHook(full)
	}
	h := &Header{Path: rel, Type: TypeRegular, Size: size, Executable: exec}
	if err := d.header(full, h); err != nil {
		return err
	}
	// Each read asks for one byte more than is due, so the read that
	// brings the last bytes also shows whether the file grew: a small
	// file costs one read, not a read and an end-of-file probe. A short
	// read of a regular file means its end.
	remain := size
	for {
		want := int(min(remain+1, int64(len(d.buf))))
		n, err := f.Read(d.buf[:want])
		if err != nil {
			return fmt.Errorf("nar: %s: %w", full, err)
		}
		if int64(n) > remain {
			return fmt.Errorf("nar: %s: file grew beyond %d bytes while being read", full, size)
		}
		if n == 0 {
			if remain > 0 {
				return fmt.Errorf("nar: %s: file shrank from %d to %d bytes while being read", full, size, size-remain)
			}
			return nil
		}
		if _, err := d.nw.Write(d.buf[:n]); err != nil {
			return fmt.Errorf("nar: %s: %w", full, err)
		}
		remain -= int64(n)
		if remain == 0 && n < want {
			return nil
		}
	}
}
