// Package compression makes and reads the compressed NAR files of a
// binary cache: xz (liblzma through cgo when it loads, pure-Go ulikunitz
// otherwise), zstd, and none, with CPU and memory bounded for the whole
// process rather than per NAR. Readers also take bzip2, which Nix's build
// logs use.
//
// It knows nothing of NARs, caches or S3: bytes in, bytes out.
package compression
