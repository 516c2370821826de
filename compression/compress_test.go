package compression

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// corpus is compressible but not trivial: text with random runs.
func corpus(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	words := []string{"nix", "store", "/lib/", "libc.so.6", "\x00\x00\x00", "ELF", "derivation", "\n"}
	var b bytes.Buffer
	for b.Len() < n {
		if r.IntN(10) == 0 {
			var rnd [16]byte
			for i := range rnd {
				rnd[i] = byte(r.Uint32())
			}
			b.Write(rnd[:])
		} else {
			b.WriteString(words[r.IntN(len(words))])
		}
	}
	return b.Bytes()[:n]
}

func compressAll(t testing.TB, c *Compressor, data []byte, writeSize int) []byte {
	var out bytes.Buffer
	w, err := c.NewWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	for len(data) > 0 {
		n := min(writeSize, len(data))
		if _, err := w.Write(data[:n]); err != nil {
			t.Fatal(err)
		}
		data = data[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// The chunked xz output must decode with liblzma (the xz tool), which is
// what Nix uses, across chunk boundaries and for empty input.
func TestChunkedXZDecodesWithLiblzma(t *testing.T) {
	xzBin := testenv.LookPath(t, "xz", "install xz-utils (.ci/install-deps does)")
	for _, backend := range []string{"liblzma", "ulikunitz"} {
		t.Run(backend, func(t *testing.T) { testXZBackend(t, xzBin, backend) })
	}
}

func testXZBackend(t *testing.T, xzBin, backend string) {
	pureGo := backend == "ulikunitz"
	if !pureGo && !loadLiblzma() {
		testenv.Unavailable(t, "liblzma.so.5 not loaded (pure-Go xz is used instead): install liblzma5 and a C compiler so the tests build with cgo (.ci/install-deps does)")
	}
	for _, tc := range []struct {
		name      string
		size      int
		chunk     int
		writeSize int
	}{
		{"empty", 0, 1 << 16, 1},
		{"one byte", 1, 1 << 16, 1},
		{"below one chunk", 1000, 1 << 16, 333},
		{"exactly one chunk", 1 << 16, 1 << 16, 1 << 16},
		{"many chunks, odd writes", 1<<20 + 17, 1 << 16, 4099},
		{"many chunks, big writes", 3 << 20, 1 << 18, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(Options{Method: "xz", Threads: 2, PureGoXZ: pureGo})
			if err != nil {
				t.Fatal(err)
			}
			if c.Backend != backend {
				t.Fatalf("backend %s, want %s", c.Backend, backend)
			}
			c.ChunkSize = tc.chunk
			data := corpus(tc.size, uint64(tc.size))
			comp := compressAll(t, c, data, tc.writeSize)
			cmd := exec.Command(xzBin, "-d", "-c")
			cmd.Stdin = bytes.NewReader(comp)
			got, err := cmd.Output()
			if err != nil {
				t.Fatalf("xz -d: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("xz -d gave %d bytes, want %d identical", len(got), len(data))
			}
			// Our own reader too: multi-stream files must read whole.
			r, err := xz.NewReader(bytes.NewReader(comp))
			if err != nil {
				t.Fatal(err)
			}
			got2, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got2, data) {
				t.Fatalf("xz.NewReader: %v, %d bytes", err, len(got2))
			}
		})
	}
}

func TestZstdRoundTrip(t *testing.T) {
	for _, level := range []int{0, 1, 19} {
		c, err := New(Options{Method: "zstd", Level: level, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		data := corpus(500_000, 7)
		comp := compressAll(t, c, data, 10_000)
		d, _ := zstd.NewReader(bytes.NewReader(comp))
		got, err := io.ReadAll(d)
		d.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("level %d: %v", level, err)
		}
		if len(comp) >= len(data) {
			t.Errorf("level %d: no compression (%d >= %d)", level, len(comp), len(data))
		}
	}
}

func TestCompressorErrors(t *testing.T) {
	for _, tc := range []struct {
		method string
		level  int
	}{{"gzip", 0}, {"zstd", 23}, {"zstd", -1}, {"xz", 10}, {"none", 3}, {"", 0}} {
		if _, err := New(Options{Method: tc.method, Level: tc.level, Threads: 1}); err == nil {
			t.Errorf("NewCompressor(%q, %d): want error", tc.method, tc.level)
		}
	}
	for method, ext := range map[string]string{"xz": ".nar.xz", "zstd": ".nar.zst", "none": ".nar"} {
		c, _ := New(Options{Method: method, Threads: 1})
		if c.Ext() != ext {
			t.Errorf("%s: Ext %q, want %q", method, c.Ext(), ext)
		}
	}
}

// A failing destination must surface its error and still let every worker
// finish (Close returns, nothing leaks).
func TestChunkedXZWriteError(t *testing.T) {
	c, _ := New(Options{Method: "xz", Threads: 2})
	c.ChunkSize = 1 << 12
	w, _ := c.NewWriter(failWriter{})
	data := corpus(1<<16, 3)
	var werr error
	for i := 0; i < len(data) && werr == nil; i += 1000 {
		_, werr = w.Write(data[i:min(i+1000, len(data))])
	}
	cerr := w.Close()
	if werr == nil && cerr == nil {
		t.Fatal("want an error from the failing writer")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func BenchmarkCompress(b *testing.B) {
	data := corpus(16<<20, 1)
	for _, m := range []string{"xz", "zstd", "none"} {
		b.Run(m, func(b *testing.B) {
			c, _ := New(Options{Method: m})
			b.SetBytes(int64(len(data)))
			var out int
			for b.Loop() {
				out = len(compressAll(b, c, data, 1<<16))
			}
			b.ReportMetric(float64(len(data))/float64(out), "ratio")
		})
	}
}

// realCorpus is a fixed mix of real files from this machine (Go binaries
// and source, shared libraries), as NARs contain; nil when absent.
func realCorpus(tb testing.TB, limit int) []byte {
	var buf bytes.Buffer
	for _, pattern := range []string{"/usr/local/go/pkg/tool/linux_amd64/*", "/usr/lib/x86_64-linux-gnu/libc.so*", "/usr/local/go/src/runtime/*.go"} {
		files, _ := filepath.Glob(pattern)
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil {
				buf.Write(b)
			}
			if buf.Len() >= limit {
				return buf.Bytes()[:limit]
			}
		}
	}
	if buf.Len() < limit/2 {
		tb.Skip("real files for the corpus not found")
	}
	return buf.Bytes()
}

// BenchmarkXZSettings compares our xz (1 MiB dictionary, independent
// chunks on all cores) with ulikunitz's defaults on the same real corpus.
func BenchmarkXZSettings(b *testing.B) {
	data := realCorpus(b, 32<<20)
	b.Run("ulikunitz-default", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		var out bytes.Buffer
		for b.Loop() {
			out.Reset()
			w, _ := xz.NewWriter(&out)
			w.Write(data)
			w.Close()
		}
		b.ReportMetric(float64(len(data))/float64(out.Len()), "ratio")
	})
	b.Run("nixpushd-ulikunitz-chunked", func(b *testing.B) {
		c, _ := New(Options{Method: "xz", PureGoXZ: true})
		b.SetBytes(int64(len(data)))
		var n int
		for b.Loop() {
			n = len(compressAll(b, c, data, 1<<16))
		}
		b.ReportMetric(float64(len(data))/float64(n), "ratio")
	})
	b.Run("nixpushd-liblzma-chunked", func(b *testing.B) {
		if !loadLiblzma() {
			b.Skip("no liblzma")
		}
		c, _ := New(Options{Method: "xz"})
		b.SetBytes(int64(len(data)))
		var n int
		for b.Loop() {
			n = len(compressAll(b, c, data, 1<<16))
		}
		b.ReportMetric(float64(len(data))/float64(n), "ratio")
	})
	b.Run("zstd-default", func(b *testing.B) {
		c, _ := New(Options{Method: "zstd"})
		b.SetBytes(int64(len(data)))
		var n int
		for b.Loop() {
			n = len(compressAll(b, c, data, 1<<16))
		}
		b.ReportMetric(float64(len(data))/float64(n), "ratio")
	})
}

// A small NAR is encoded with a dictionary sized to it: the stream is as
// small as the preset's own (only the header's dictionary size differs),
// xz decodes it, and says the dictionary is the input's size, not the
// preset's megabytes that liblzma would allocate and clear for it.
func TestXZDictionarySizedToInput(t *testing.T) {
	xzBin := testenv.LookPath(t, "xz", "install xz-utils (.ci/install-deps does)")
	if !loadLiblzma() {
		testenv.Unavailable(t, "liblzma.so.5 not loaded: install liblzma5 and a C compiler (.ci/install-deps does)")
	}
	for _, tc := range []struct {
		size, preset int
		dict         string
	}{
		{600, 0, "4 KiB"},
		{5000, 6, "8 KiB"},
		{70000, 2, "128 KiB"},
		{1<<20 + 1, 6, "2 MiB"},
		{3 << 20, 1, "1 MiB"}, // the preset's own: never larger
	} {
		data := corpus(tc.size, uint64(tc.size))
		ours, err := lzmaEncode(tc.preset, data, make([]byte, lzmaBound(len(data))))
		if err != nil {
			t.Fatal(err)
		}
		easy, err := lzmaEncodePreset(tc.preset, data, make([]byte, lzmaBound(len(data))))
		if err != nil {
			t.Fatal(err)
		}
		if len(ours) != len(easy) {
			t.Errorf("%d bytes at preset %d: %d compressed bytes, the preset's own dictionary gives %d", tc.size, tc.preset, len(ours), len(easy))
		}
		cmd := exec.Command(xzBin, "-d", "-c")
		cmd.Stdin = bytes.NewReader(ours)
		if got, err := cmd.Output(); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("xz -d of %d bytes: %v (%d bytes back)", tc.size, err, len(got))
		}
		f := filepath.Join(t.TempDir(), "x.xz")
		os.WriteFile(f, ours, 0o644)
		out, err := exec.Command(xzBin, "-lvv", f).CombinedOutput()
		if err != nil {
			t.Fatalf("xz -lvv: %v\n%s", err, out)
		}
		if want := "Memory needed:"; !strings.Contains(string(out), want) {
			t.Fatalf("xz -lvv says no %q:\n%s", want, out)
		}
		if want := "dict=" + strings.ReplaceAll(tc.dict, " ", ""); !strings.Contains(string(out), want) {
			t.Errorf("%d bytes: xz -lvv does not show %s:\n%s", tc.size, want, out)
		}
	}
}
