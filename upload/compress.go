package upload

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Compressor makes the compressed NAR files. One Compressor is shared by all
// workers so that the number of chunks being compressed at once, and so CPU
// and memory, is bounded for the whole process, not per NAR.
type Compressor struct {
	Method    string // "xz", "zstd" or "none"
	Level     int    // zstd level (1–22); 0 = default
	ChunkSize int    // xz: input bytes per independent stream

	slots chan struct{} // one token per chunk being compressed
	bufs  sync.Pool
}

// Default xz tuning. A 1 MiB dictionary is ~1.7× faster than ulikunitz's
// 8 MiB default and compresses NARs slightly better (shared/reference/
// compression-notes.md); never use its BinaryTree matcher, which corrupts.
const (
	xzDictCap        = 1 << 20
	DefaultChunkSize = 8 << 20
)

// NewCompressor returns a Compressor for method using up to threads cores
// (0 = GOMAXPROCS).
func NewCompressor(method string, level, threads int) (*Compressor, error) {
	switch method {
	case "xz", "none":
	case "zstd":
		if level < 0 || level > 22 {
			return nil, fmt.Errorf("compression level %d out of range for zstd: use 1–22", level)
		}
	default:
		return nil, fmt.Errorf("unknown compression %q: use xz, zstd or none", method)
	}
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	c := &Compressor{Method: method, Level: level, ChunkSize: DefaultChunkSize, slots: make(chan struct{}, threads)}
	return c, nil
}

// Ext is the NAR file suffix Nix uses for this compression.
func (c *Compressor) Ext() string {
	switch c.Method {
	case "xz":
		return ".nar.xz"
	case "zstd":
		return ".nar.zst"
	}
	return ".nar"
}

// NewWriter returns a writer that compresses into w. Close flushes it (and
// must be called even after an error, to release workers); it does not close w.
func (c *Compressor) NewWriter(w io.Writer) (io.WriteCloser, error) {
	switch c.Method {
	case "xz":
		return &chunkedXZ{c: c, w: w}, nil
	case "zstd":
		level := zstd.SpeedDefault
		if c.Level > 0 {
			level = zstd.EncoderLevelFromZstd(c.Level)
		}
		return zstd.NewWriter(w, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1))
	default:
		return nopCloser{w}, nil
	}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func (c *Compressor) getBuf() *bytes.Buffer {
	if b, ok := c.bufs.Get().(*bytes.Buffer); ok {
		b.Reset()
		return b
	}
	return bytes.NewBuffer(make([]byte, 0, c.ChunkSize))
}

func (c *Compressor) putBuf(b *bytes.Buffer) {
	if b.Cap() <= 2*c.ChunkSize { // don't keep a buffer that grew on incompressible data
		c.bufs.Put(b)
	}
}

// xzStream compresses src as one complete xz stream into dst.
func xzStream(dst io.Writer, src []byte) error {
	zw, err := xz.WriterConfig{DictCap: xzDictCap}.NewWriter(dst)
	if err != nil {
		return err
	}
	if _, err := zw.Write(src); err != nil {
		return err
	}
	return zw.Close()
}

// chunkedXZ splits its input into ChunkSize pieces and compresses each as an
// independent xz stream, on as many cores as the Compressor has slots. The
// concatenation is a valid .xz file (liblzma, `xz -d` and Nix read all
// streams). At most len(slots)+1 chunks per writer are held in memory.
type chunkedXZ struct {
	c       *Compressor
	w       io.Writer
	cur     *bytes.Buffer
	pending []chan chunkResult // in input order
	err     error
	closed  bool
}

type chunkResult struct {
	in, out *bytes.Buffer
	err     error
}

func (z *chunkedXZ) Write(p []byte) (int, error) {
	if z.err != nil {
		return 0, z.err
	}
	n := 0
	for len(p) > 0 {
		if z.cur == nil {
			z.cur = z.c.getBuf()
		}
		room := z.c.ChunkSize - z.cur.Len()
		take := min(room, len(p))
		z.cur.Write(p[:take])
		p = p[take:]
		n += take
		if z.cur.Len() == z.c.ChunkSize {
			z.dispatch()
			if z.err != nil {
				return n, z.err
			}
		}
	}
	return n, nil
}

// dispatch hands the current chunk to a worker goroutine, first writing out
// finished chunks so that memory stays bounded.
func (z *chunkedXZ) dispatch() {
	for len(z.pending) >= cap(z.c.slots) {
		z.drainOne()
	}
	in := z.cur
	z.cur = nil
	ch := make(chan chunkResult, 1)
	z.pending = append(z.pending, ch)
	z.c.slots <- struct{}{}
	go func() {
		defer func() { <-z.c.slots }()
		out := z.c.getBuf()
		err := xzStream(out, in.Bytes())
		ch <- chunkResult{in: in, out: out, err: err}
	}()
}

func (z *chunkedXZ) drainOne() {
	r := <-z.pending[0]
	z.pending = z.pending[1:]
	if z.err == nil {
		z.err = r.err
	}
	if z.err == nil {
		_, z.err = z.w.Write(r.out.Bytes())
	}
	z.c.putBuf(r.in)
	z.c.putBuf(r.out)
}

func (z *chunkedXZ) Close() error {
	if z.closed {
		return z.err
	}
	z.closed = true
	if z.cur != nil && (z.cur.Len() > 0 || len(z.pending) == 0) && z.err == nil {
		if len(z.pending) == 0 {
			// Small NAR: compress inline, no goroutine.
			out := z.c.getBuf()
			z.c.slots <- struct{}{}
			z.err = xzStream(out, z.cur.Bytes())
			<-z.c.slots
			if z.err == nil {
				_, z.err = z.w.Write(out.Bytes())
			}
			z.c.putBuf(out)
		} else {
			z.dispatch()
		}
	} else if z.cur == nil && len(z.pending) == 0 && z.err == nil {
		// Empty input still needs one (empty) stream to be a valid .xz file.
		z.err = xzStream(z.w, nil)
	}
	if z.cur != nil {
		z.c.putBuf(z.cur)
		z.cur = nil
	}
	// Always wait for every worker: no goroutine outlives the writer.
	for len(z.pending) > 0 {
		z.drainOne()
	}
	return z.err
}
