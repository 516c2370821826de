//go:build cgo && linux

package compression

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

// liblzma is loaded at run time so that building needs no headers and a
// machine without liblzma still runs (on the pure-Go encoder). The only
// layouts shared with the library are lzma_filter (an id and a pointer)
// and the first field of lzma_options_lzma (dict_size), both fixed since
// liblzma 5.0.
typedef int (*nixpushd_encode_fn)(uint32_t preset, int check, const void *allocator,
	const uint8_t *in, size_t in_size, uint8_t *out, size_t *out_pos, size_t out_size);
typedef size_t (*nixpushd_bound_fn)(size_t);
typedef unsigned char (*nixpushd_preset_fn)(void *options, uint32_t preset);
typedef int (*nixpushd_filters_fn)(const void *filters, int check, const void *allocator,
	const uint8_t *in, size_t in_size, uint8_t *out, size_t *out_pos, size_t out_size);

static nixpushd_encode_fn nixpushd_encode;
static nixpushd_bound_fn nixpushd_bound;
static nixpushd_preset_fn nixpushd_preset;
static nixpushd_filters_fn nixpushd_filters;

typedef struct { uint64_t id; void *options; } nixpushd_filter;

static int nixpushd_lzma_open(const char *path) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) return -1;
	nixpushd_encode = (nixpushd_encode_fn)dlsym(h, "lzma_easy_buffer_encode");
	nixpushd_bound = (nixpushd_bound_fn)dlsym(h, "lzma_stream_buffer_bound");
	if (!nixpushd_encode || !nixpushd_bound) return -2;
	nixpushd_preset = (nixpushd_preset_fn)dlsym(h, "lzma_lzma_preset");
	nixpushd_filters = (nixpushd_filters_fn)dlsym(h, "lzma_stream_buffer_encode");
	return 0;
}

// nixpushd_lzma_encode_dict is preset's LZMA2 with the dictionary cut to
// dict bytes (0: the preset's own): for an input no larger than dict the
// stream decodes the same and compresses as well, but the encoder's
// tables, which liblzma allocates and clears for every stream, are sized
// to the input.
static int nixpushd_lzma_encode_dict(uint32_t preset, uint32_t dict, const uint8_t *in, size_t in_size,
		uint8_t *out, size_t *out_pos, size_t out_size) {
	if (dict == 0 || !nixpushd_preset || !nixpushd_filters)
		return nixpushd_encode(preset, 4, NULL, in, in_size, out, out_pos, out_size);
	uint64_t opts[32] = {0}; // room for lzma_options_lzma (112 bytes in 5.x)
	if (nixpushd_preset(opts, preset)) return -3;
	uint32_t *dict_size = (uint32_t *)opts;
	if (dict < *dict_size) *dict_size = dict;
	nixpushd_filter f[2] = {{0x21, opts}, {UINT64_MAX, NULL}}; // LZMA_FILTER_LZMA2, LZMA_VLI_UNKNOWN
	return nixpushd_filters(f, 4, NULL, in, in_size, out, out_pos, out_size); // 4: LZMA_CHECK_CRC64
}

static size_t nixpushd_lzma_bound(size_t n) { return nixpushd_bound(n); }
*/
import "C"

import (
	"fmt"
	"sync"
	"unsafe"
)

// liblzmaPath is the liblzma.so.5 to load first; packaged builds set it
// with -ldflags "-X github.com/nixpushd/nixpushd/compression.liblzmaPath=…".
var liblzmaPath string

var (
	lzmaOnce sync.Once
	lzmaOK   bool
)

// loadLiblzma opens liblzma once: the path baked in at build time (Nix
// packages set it), then the system's liblzma.so.5.
func loadLiblzma() bool {
	lzmaOnce.Do(func() {
		for _, p := range []string{liblzmaPath, "liblzma.so.5"} {
			if p == "" {
				continue
			}
			cp := C.CString(p)
			ok := C.nixpushd_lzma_open(cp) == 0
			C.free(unsafe.Pointer(cp))
			if ok {
				lzmaOK = true
				return
			}
		}
	})
	return lzmaOK
}

// lzmaBound is the largest size of one xz stream holding n bytes.
func lzmaBound(n int) int { return int(C.nixpushd_lzma_bound(C.size_t(n))) }

// dictFor is the dictionary an n-byte input needs: the next power of two,
// at least liblzma's minimum of 4 KiB.
func dictFor(n int) int {
	d := 4096
	for d < n && d < 1<<30 {
		d <<= 1
	}
	return d
}

// lzmaEncode compresses in as one complete .xz stream into out, which must
// have capacity lzmaBound(len(in)), and returns the used part of out.
func lzmaEncode(preset int, in, out []byte) ([]byte, error) {
	return lzmaEncodeDict(preset, dictFor(len(in)), in, out)
}

// lzmaEncodePreset is lzmaEncode with the preset's own dictionary
// (lzma_easy_buffer_encode), for comparison in tests.
func lzmaEncodePreset(preset int, in, out []byte) ([]byte, error) {
	return lzmaEncodeDict(preset, 0, in, out)
}

func lzmaEncodeDict(preset, dict int, in, out []byte) ([]byte, error) {
	out = out[:cap(out)]
	var inPtr *C.uint8_t
	if len(in) > 0 {
		inPtr = (*C.uint8_t)(unsafe.Pointer(&in[0]))
	}
	var pos C.size_t
	ret := C.nixpushd_lzma_encode_dict(C.uint32_t(preset), C.uint32_t(dict), inPtr, C.size_t(len(in)),
		(*C.uint8_t)(unsafe.Pointer(&out[0])), &pos, C.size_t(len(out)))
	if ret != 0 {
		return nil, fmt.Errorf("liblzma: encoding returned %d", int(ret))
	}
	return out[:pos], nil
}
