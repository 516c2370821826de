//go:build cgo && linux

package upload

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

// liblzma is loaded at run time so that building needs no headers and a
// machine without liblzma still runs (on the pure-Go encoder). Only two
// plain functions are used, so no struct layout is shared with the library.
typedef int (*nixpushd_encode_fn)(uint32_t preset, int check, const void *allocator,
	const uint8_t *in, size_t in_size, uint8_t *out, size_t *out_pos, size_t out_size);
typedef size_t (*nixpushd_bound_fn)(size_t);

static nixpushd_encode_fn nixpushd_encode;
static nixpushd_bound_fn nixpushd_bound;

static int nixpushd_lzma_open(const char *path) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) return -1;
	nixpushd_encode = (nixpushd_encode_fn)dlsym(h, "lzma_easy_buffer_encode");
	nixpushd_bound = (nixpushd_bound_fn)dlsym(h, "lzma_stream_buffer_bound");
	if (!nixpushd_encode || !nixpushd_bound) return -2;
	return 0;
}

static int nixpushd_lzma_encode(uint32_t preset, const uint8_t *in, size_t in_size,
		uint8_t *out, size_t *out_pos, size_t out_size) {
	return nixpushd_encode(preset, 4, NULL, in, in_size, out, out_pos, out_size); // 4: LZMA_CHECK_CRC64
}

static size_t nixpushd_lzma_bound(size_t n) { return nixpushd_bound(n); }
*/
import "C"

import (
	"fmt"
	"sync"
	"unsafe"
)

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

// lzmaEncode compresses in as one complete .xz stream into out, which must
// have capacity lzmaBound(len(in)), and returns the used part of out.
func lzmaEncode(preset int, in, out []byte) ([]byte, error) {
	out = out[:cap(out)]
	var inPtr *C.uint8_t
	if len(in) > 0 {
		inPtr = (*C.uint8_t)(unsafe.Pointer(&in[0]))
	}
	var pos C.size_t
	ret := C.nixpushd_lzma_encode(C.uint32_t(preset), inPtr, C.size_t(len(in)),
		(*C.uint8_t)(unsafe.Pointer(&out[0])), &pos, C.size_t(len(out)))
	if ret != 0 {
		return nil, fmt.Errorf("liblzma: lzma_easy_buffer_encode returned %d", int(ret))
	}
	return out[:pos], nil
}
