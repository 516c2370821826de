package compression

import (
	"compress/bzip2"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Compressor makes the compressed NAR files. One Compressor is shared by all
// workers so that CPU and memory are bounded for the whole process, not per
// NAR: at most `threads` chunks are compressed at once, and at most
// threads+1 chunk buffer pairs exist.
//
// xz output is a concatenation of independent xz streams, one per chunk,
// compressed in parallel: a valid .xz file that liblzma (`xz -d`, Nix) reads
// whole. Chunks are compressed with liblzma when it can be loaded (preset
// 2: on real store paths, 1.2× the size of `nix copy`'s xz -6 at 6× its
// speed on two cores) and with the pure-Go ulikunitz/xz otherwise.
type Compressor struct {
	Method    string // "xz", "zstd" or "none"
	Level     int    // zstd 1–22, xz 0–9 (liblzma preset); 0 = default
	ChunkSize int    // xz: input bytes per independent stream
	Backend   string // xz: "liblzma" or "ulikunitz"

	preset int      // liblzma preset actually used for full chunks
	notes  []string // what start-up should say about the level

	slots  chan struct{} // chunks being compressed
	tokens chan struct{} // chunk buffer pairs in existence
	free   chan []byte   // recycled buffers: no garbage per chunk
	zstds  sync.Pool     // *zstd.Encoder: making one costs more than a small NAR
}

// Tuning. ulikunitz/xz with a 1 MiB dictionary is ~1.7× faster than its
// 8 MiB default and compresses NARs as well (shared/reference/
// compression-notes.md); its BinaryTree matcher corrupts output: never use it.
const (
	tinyChunk        = 64 << 10
	xzDictCap        = 1 << 20
	DefaultChunkSize = 8 << 20
	defaultXZPreset  = 2
)

// Options choose a Compressor.
type Options struct {
	Method  string // "xz", "zstd" or "none"
	Level   int    // zstd 1–22, xz 0–9; 0 = the method's default
	Threads int    // cores used at most; 0 = GOMAXPROCS
	// PureGoXZ makes xz use the pure-Go encoder even where liblzma loads.
	PureGoXZ bool
}

// New returns a Compressor for o.Method using up to o.Threads cores.
func New(o Options) (*Compressor, error) {
	method, level, threads := o.Method, o.Level, o.Threads
	switch method {
	case "xz":
		if level < 0 || level > 9 {
			return nil, fmt.Errorf("compression level %d out of range for xz: use 0–9", level)
		}
	case "none":
		if level != 0 {
			return nil, fmt.Errorf("compression level %d given, but compression none has no levels", level)
		}
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
	c := &Compressor{Method: method, Level: level, ChunkSize: DefaultChunkSize, preset: defaultXZPreset}
	if method == "xz" {
		c.Backend = "ulikunitz"
		if !o.PureGoXZ && loadLiblzma() {
			c.Backend = "liblzma"
		}
		threads = c.xzLevel(level, threads)
	}
	c.slots = make(chan struct{}, threads)
	c.tokens = make(chan struct{}, threads+1) // all cores busy, one chunk filling
	c.free = make(chan []byte, 2*cap(c.tokens))
	return c, nil
}

// xzEncoderMiB is liblzma's encoder memory per preset (xz(1)'s table).
var xzEncoderMiB = [10]int{3, 9, 17, 32, 48, 94, 94, 186, 370, 674}

// XZEncoderBudget bounds the memory of the liblzma encoders working at
// once: a heavy preset compresses fewer chunks at a time.
const XZEncoderBudget = 512 << 20

// xzLevel settles the preset for level and returns how many chunks may
// be compressed at once, noting what the operator should know.
func (c *Compressor) xzLevel(level, threads int) int {
	if c.Backend != "liblzma" {
		if level != 0 {
			c.notes = append(c.notes, fmt.Sprintf("--compression-level %d is ignored: liblzma.so.5 could not be loaded, and the pure-Go xz encoder (ulikunitz) has no presets; install xz's library, or use --compression zstd", level))
		}
		return threads
	}
	if level > 0 {
		c.preset = level
	}
	if c.preset > 6 {
		// Presets 7–9 differ from 6 only by a 16–64 MiB dictionary: on
		// independent 8 MiB chunks they compress byte for byte like 6,
		// with 2–7× its memory.
		c.notes = append(c.notes, fmt.Sprintf("xz preset %d is run as preset 6: its %d MiB dictionary is larger than the 8 MiB chunks nixpushd compresses independently, so it would compress exactly as 6 does with %d MiB instead of %d MiB per chunk",
			c.preset, 8<<(c.preset-6), xzEncoderMiB[c.preset], xzEncoderMiB[6]))
		c.preset = 6
	}
	per := xzEncoderMiB[c.preset] << 20
	if fit := max(1, XZEncoderBudget/per); threads > fit {
		c.notes = append(c.notes, fmt.Sprintf("xz preset %d needs %d MiB per chunk: compressing at most %d chunks at once (not %d) to keep the encoders under %d MiB",
			c.preset, xzEncoderMiB[c.preset], fit, threads, XZEncoderBudget>>20))
		threads = fit
	}
	return threads
}

// Notes are what start-up should log about the compression level: one
// ignored, lowered, or given fewer cores to bound memory.
func (c *Compressor) Notes() []string { return c.notes }

// String names the method and, for xz, the encoder ("xz (liblzma)").
func (c *Compressor) String() string {
	if c.Backend != "" {
		return c.Method + " (" + c.Backend + ")"
	}
	return c.Method
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
		if enc, ok := c.zstds.Get().(*zstd.Encoder); ok {
			enc.Reset(w)
			return &pooledZstd{Encoder: enc, c: c}, nil
		}
		level := zstd.SpeedDefault
		if c.Level > 0 {
			level = zstd.EncoderLevelFromZstd(c.Level)
		}
		// Lower memory: the window stays 8 MiB, but buffers are not
		// preallocated per concurrent block.
		enc, err := zstd.NewWriter(w, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
		if err != nil {
			return nil, err
		}
		return &pooledZstd{Encoder: enc, c: c}, nil
	default:
		return nopCloser{w}, nil
	}
}

// pooledZstd returns its encoder to the pool on Close.
type pooledZstd struct {
	*zstd.Encoder
	c *Compressor
}

func (z *pooledZstd) Close() error {
	if z.Encoder == nil {
		return nil
	}
	err := z.Encoder.Close()
	z.Encoder.Reset(nil) // drop the reference to the output
	z.c.zstds.Put(z.Encoder)
	z.Encoder = nil
	return err
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// bufCap is the capacity of every chunk buffer: enough for a chunk and
// for its compressed form, so that input and output buffers are
// interchangeable and recycling never discards one.
func (c *Compressor) bufCap() int {
	n := c.ChunkSize + c.ChunkSize/64 + 64<<10
	if c.Backend == "liblzma" {
		n = max(n, lzmaBound(c.ChunkSize))
	}
	return n
}

// getBuf returns a recycled buffer of at least size bytes capacity.
func (c *Compressor) getBuf(size int) []byte {
	select {
	case b := <-c.free:
		if cap(b) >= size {
			return b[:0]
		}
	default:
	}
	return make([]byte, 0, max(size, c.bufCap()))
}

func (c *Compressor) putBuf(b []byte) {
	select {
	case c.free <- b:
	default:
	}
}

// compressChunk compresses src as one complete xz stream, holding a CPU slot.
func (c *Compressor) compressChunk(src []byte) ([]byte, error) {
	c.slots <- struct{}{}
	defer func() { <-c.slots }()
	if c.Backend == "liblzma" {
		preset := c.preset
		if len(src) <= tinyChunk {
			// A dictionary bigger than the input buys nothing, and setting
			// one up costs more than compressing a small NAR: preset 0
			// (256 KiB) is 4x faster there, byte for byte the same size
			// on small inputs.
			preset = 0
		}
		return lzmaEncode(preset, src, c.getBuf(lzmaBound(len(src))))
	}
	out := &sliceWriter{b: c.getBuf(len(src)/2 + 4096)}
	dict := xzDictCap
	if len(src) < dict {
		dict = max(len(src), 4096) // the pure-Go encoder's minimum
	}
	zw, err := xz.WriterConfig{DictCap: dict}.NewWriter(out)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(src); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.b, nil
}

type sliceWriter struct{ b []byte }

func (s *sliceWriter) Write(p []byte) (int, error) { s.b = append(s.b, p...); return len(p), nil }

// chunkedXZ splits its input into ChunkSize pieces and compresses each as an
// independent xz stream on the Compressor's workers, writing them in order.
type chunkedXZ struct {
	c       *Compressor
	w       io.Writer
	cur     []byte             // filling; holds a token when non-nil
	pending []chan chunkResult // dispatched, in input order; each holds a token
	chunks  int                // dispatched so far
	err     error
	closed  bool
}

type chunkResult struct {
	in, out []byte
	err     error
}

// take gets a buffer token, first finishing this writer's own chunks so
// that it never waits for tokens it holds itself.
func (z *chunkedXZ) take() {
	for {
		select {
		case z.c.tokens <- struct{}{}:
			return
		default:
		}
		if len(z.pending) == 0 {
			z.c.tokens <- struct{}{} // others hold them and will drain
			return
		}
		z.drainOne()
	}
}

func (z *chunkedXZ) Write(p []byte) (int, error) {
	if z.err != nil {
		return 0, z.err
	}
	n := 0
	for len(p) > 0 {
		if z.cur == nil {
			z.take()
			z.cur = z.c.getBuf(z.c.bufCap())
		}
		take := min(z.c.ChunkSize-len(z.cur), len(p))
		z.cur = append(z.cur, p[:take]...)
		p = p[take:]
		n += take
		if len(z.cur) == z.c.ChunkSize {
			z.dispatch()
			if z.err != nil {
				return n, z.err
			}
		}
	}
	return n, nil
}

// dispatch hands the current chunk to a worker goroutine.
func (z *chunkedXZ) dispatch() {
	in := z.cur
	z.cur = nil
	ch := make(chan chunkResult, 1)
	z.pending = append(z.pending, ch)
	z.chunks++
	go func() {
		out, err := z.c.compressChunk(in)
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
		_, z.err = z.w.Write(r.out)
	}
	z.c.putBuf(r.in)
	if cap(r.out) > 0 {
		z.c.putBuf(r.out)
	}
	<-z.c.tokens
}

func (z *chunkedXZ) Close() error {
	if z.closed {
		return z.err
	}
	z.closed = true
	switch {
	case z.err != nil && z.cur != nil:
		z.c.putBuf(z.cur)
		z.cur = nil
		<-z.c.tokens
	case z.err != nil:
	case len(z.cur) > 0:
		z.dispatch()
	case z.cur != nil:
		// Empty last chunk after full ones: nothing to add.
		z.c.putBuf(z.cur)
		z.cur = nil
		<-z.c.tokens
	}
	if z.err == nil && len(z.pending) == 0 && z.chunks == 0 {
		// Empty input still needs one (empty) stream to be a valid .xz file.
		z.take()
		z.cur = z.c.getBuf(0)
		z.dispatch()
	}
	// Always wait for every worker: no goroutine outlives the writer.
	for len(z.pending) > 0 {
		z.drainOne()
	}
	return z.err
}

// NewReader decompresses a NAR file written with method, as a narinfo's
// Compression names it (verify --full reads what any Nix wrote).
func NewReader(method string, r io.Reader) (io.ReadCloser, error) {
	switch method {
	case "xz":
		zr, err := xz.NewReader(r) // reads concatenated streams, as ours are
		if err != nil {
			return nil, err
		}
		return io.NopCloser(zr), nil
	case "zstd":
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return zr.IOReadCloser(), nil
	case "bzip2":
		return io.NopCloser(bzip2.NewReader(r)), nil
	case "none", "":
		return io.NopCloser(r), nil
	}
	return nil, fmt.Errorf("compression %q is not supported for reading (xz, zstd, bzip2, none)", method)
}
