package nar

import "strconv"

// Encoding is a base-32 encoding in the style of encoding/base32, but with
// Nix's bit order: the last input bit comes out first. There is no padding.
type Encoding struct {
	alphabet  string
	decodeMap [256]byte
}

const invalidDigit = 0xff

// NewEncoding returns an Encoding for a 32-character alphabet.
func NewEncoding(alphabet string) *Encoding {
	if len(alphabet) != 32 {
		panic("nar: encoding alphabet is not 32 bytes long")
	}
	e := &Encoding{alphabet: alphabet}
	for i := range e.decodeMap {
		e.decodeMap[i] = invalidDigit
	}
	for i := 0; i < len(alphabet); i++ {
		e.decodeMap[alphabet[i]] = byte(i)
	}
	return e
}

// NixBase32 is the encoding Nix uses for store path hashes and narinfo
// hashes. The alphabet omits e, o, u and t.
var NixBase32 = NewEncoding("0123456789abcdfghijklmnpqrsvwxyz")

// CorruptInputError reports the offset of the offending byte in the input.
type CorruptInputError int64

func (e CorruptInputError) Error() string {
	return "illegal nix-base32 data at input byte " + strconv.FormatInt(int64(e), 10)
}

// EncodedLen returns the length of the encoding of n bytes.
func (e *Encoding) EncodedLen(n int) int {
	if n <= 0 {
		return 0
	}
	return (n*8-1)/5 + 1
}

// DecodedLen returns the number of bytes n characters decode to. Lengths
// that no byte count encodes to are rejected by Decode.
func (e *Encoding) DecodedLen(n int) int {
	return n * 5 / 8
}

// Encode writes EncodedLen(len(src)) characters to dst.
func (e *Encoding) Encode(dst, src []byte) {
	n := e.EncodedLen(len(src))
	for i := 0; i < n; i++ {
		// Character i (from the end) holds bits 5i..5i+4 of src, read
		// as a little-endian bit string.
		b := (n - 1 - i) * 5
		j, k := b/8, uint(b%8)
		c := src[j] >> k
		if j+1 < len(src) {
			c |= src[j+1] << (8 - k)
		}
		dst[i] = e.alphabet[c&0x1f]
	}
}

// EncodeToString returns the encoding of src.
func (e *Encoding) EncodeToString(src []byte) string {
	buf := make([]byte, e.EncodedLen(len(src)))
	e.Encode(buf, src)
	return string(buf)
}

// Decode writes DecodedLen(len(src)) bytes to dst. Like Nix it rejects
// characters outside the alphabet, lengths no byte count encodes to, and
// set bits beyond the decoded length.
func (e *Encoding) Decode(dst, src []byte) (int, error) {
	n := e.DecodedLen(len(src))
	if e.EncodedLen(n) != len(src) {
		return 0, CorruptInputError(len(src))
	}
	out := dst[:n]
	clear(out)
	for i := 0; i < len(src); i++ {
		d := e.decodeMap[src[i]]
		if d == invalidDigit {
			return 0, CorruptInputError(i)
		}
		b := (len(src) - 1 - i) * 5
		j, k := b/8, uint(b%8)
		out[j] |= d << k
		if hi := d >> (8 - k); hi != 0 {
			if j+1 >= n {
				return 0, CorruptInputError(i)
			}
			out[j+1] |= hi
		}
	}
	return n, nil
}

// DecodeString returns the bytes s encodes.
func (e *Encoding) DecodeString(s string) ([]byte, error) {
	buf := make([]byte, e.DecodedLen(len(s)))
	n, err := e.Decode(buf, []byte(s))
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}
