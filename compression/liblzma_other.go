//go:build !cgo || !linux

package compression

import "errors"

// Without cgo, xz always uses the pure-Go encoder.
func loadLiblzma() bool                              { return false }
func lzmaBound(n int) int                            { return n }
func lzmaEncode(int, []byte, []byte) ([]byte, error) { return nil, errors.New("liblzma not built in") }
func lzmaEncodePreset(int, []byte, []byte) ([]byte, error) {
	return nil, errors.New("liblzma not built in")
}
