package nar

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ListingNode is one node of a NAR listing: the tree Nix writes to
// <hashpart>.ls when a cache has write-nar-listing=true.
type ListingNode struct {
	Type       NodeType
	Size       int64                   // regular files
	Executable bool                    // regular files
	NarOffset  int64                   // regular files: offset of the contents in the NAR
	Target     string                  // symlinks
	Entries    map[string]*ListingNode // directories
}

// Listing is the listing of one NAR, as Nix's listNar writes it.
type Listing struct {
	Root *ListingNode
}

// MarshalJSON writes the listing as Nix 2.8 does, byte for byte:
// {"version":1,"root":NODE}, where a regular file is
// {"type":"regular","size":N[,"executable":true],"narOffset":N}, a
// directory {"type":"directory","entries":{NAME:NODE,…}} (names sorted
// byte-wise) and a symlink {"type":"symlink","target":"…"}.
func (l *Listing) MarshalJSON() ([]byte, error) {
	if l.Root == nil {
		return nil, errors.New("nar: empty listing")
	}
	b := append([]byte(nil), `{"version":1,"root":`...)
	b = l.Root.appendJSON(b)
	return append(b, '}'), nil
}

func (n *ListingNode) appendJSON(b []byte) []byte {
	switch n.Type {
	case TypeRegular:
		b = append(b, `{"type":"regular","size":`...)
		b = strconv.AppendInt(b, n.Size, 10)
		if n.Executable {
			b = append(b, `,"executable":true`...)
		}
		b = append(b, `,"narOffset":`...)
		b = strconv.AppendInt(b, n.NarOffset, 10)
		return append(b, '}')
	case TypeSymlink:
		b = append(b, `{"type":"symlink","target":`...)
		b = appendJSONString(b, n.Target)
		return append(b, '}')
	}
	b = append(b, `{"type":"directory","entries":{`...)
	names := make([]string, 0, len(n.Entries))
	for name := range n.Entries {
		names = append(names, name)
	}
	slices.Sort(names)
	for i, name := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, name)
		b = append(b, ':')
		b = n.Entries[name].appendJSON(b)
	}
	return append(b, "}}"...)
}

// appendJSONString quotes s the way Nix's JSON writer does: `"` and `\`
// escaped, \n \r \t by name, other bytes below 0x20 as \u00XX, and every
// other byte (UTF-8 or not) as is.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// Lookup returns the node at the slash-separated path below the root ("" is
// the root), or nil.
func (l *Listing) Lookup(path string) *ListingNode {
	n := l.Root
	if path == "" || n == nil {
		return n
	}
	for _, name := range strings.Split(path, "/") {
		if n == nil || n.Type != TypeDirectory {
			return nil
		}
		n = n.Entries[name]
	}
	return n
}

// maxTokenLen bounds the tokens a Parser accepts other than file contents
// (names, symlink targets): far above any file system's limit.
const maxTokenLen = 1 << 16

// Parser is an io.Writer that checks a NAR stream as it passes through and
// builds its Listing, without holding any file contents: tee a NAR into it
// (io.MultiWriter) while it is written elsewhere. It accepts exactly what
// Writer produces: the grammar, sorted unique entry names, zero padding.
type Parser struct {
	off     int64 // bytes consumed so far
	err     error // sticky
	done    bool  // the root node is closed
	listing Listing

	// tokenizer
	lenBuf  [8]byte
	lenHave int
	inTok   bool   // reading a token's bytes (or skipping contents)
	skip    bool   // the token is file contents: count, do not keep
	tok     []byte // the token so far
	tokLen  int64  // its length
	tokHave int64
	padLeft int // zero bytes still due after the token

	// grammar
	state   pstate
	stack   []*ListingNode // open directories
	names   []string       // for each open directory, the last entry name
	cur     *ListingNode   // the node being described
	curName string         // its name in the parent
}

type pstate int

const (
	psMagic pstate = iota
	psOpen
	psType
	psTypeVal
	psRegAttr  // "executable" or "contents"
	psExecVal  // "" after executable
	psContents // "contents" after executable ""
	psBody     // the file contents token
	psTarget   // "target"
	psTargetVal
	psClose    // ")" closing a node
	psDir      // "entry" or ")" inside a directory
	psEntry    // "(" opening an entry
	psName     // "name"
	psNameVal  // the name
	psNode     // "node"
	psEntryEnd // ")" closing an entry
)

// NewParser returns a Parser expecting a NAR from its first byte.
func NewParser() *Parser { return &Parser{} }

// Write consumes the next bytes of the NAR. It fails on the first byte
// that cannot belong to a valid NAR and on any byte after its end.
func (p *Parser) Write(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	total := len(b)
	for len(b) > 0 {
		switch {
		case !p.inTok && p.padLeft > 0:
			for p.padLeft > 0 && len(b) > 0 {
				if b[0] != 0 {
					p.fail("non-zero padding")
					return total - len(b), p.err
				}
				b = b[1:]
				p.off++
				p.padLeft--
			}
		case !p.inTok:
			if p.done {
				p.fail("data after the end of the archive")
				return total - len(b), p.err
			}
			n := copy(p.lenBuf[p.lenHave:], b)
			p.lenHave += n
			b = b[n:]
			p.off += int64(n)
			if p.lenHave < 8 {
				continue
			}
			p.lenHave = 0
			l := binary.LittleEndian.Uint64(p.lenBuf[:])
			p.skip = p.state == psBody
			if !p.skip && l > maxTokenLen {
				p.fail(fmt.Sprintf("token of %d bytes where at most %d are allowed", l, maxTokenLen))
				return total - len(b), p.err
			}
			if l > 1<<62 {
				p.fail("impossible length")
				return total - len(b), p.err
			}
			p.inTok, p.tokLen, p.tokHave, p.tok = true, int64(l), 0, p.tok[:0]
			p.padLeft = pad(int(l % 8))
			if p.skip {
				p.cur.Size, p.cur.NarOffset = int64(l), p.off
			}
			if l == 0 {
				p.endToken()
			}
		default:
			n := int(min(int64(len(b)), p.tokLen-p.tokHave))
			if !p.skip {
				p.tok = append(p.tok, b[:n]...)
			}
			b = b[n:]
			p.off += int64(n)
			p.tokHave += int64(n)
			if p.tokHave == p.tokLen {
				p.endToken()
			}
		}
		if p.err != nil {
			return total - len(b), p.err
		}
	}
	return total, nil
}

func (p *Parser) fail(msg string) {
	p.err = fmt.Errorf("nar: invalid archive at byte %d: %s", p.off, msg)
}

func (p *Parser) endToken() {
	p.inTok = false
	if p.skip {
		p.skip = false
		p.state = psClose
		return
	}
	p.token(p.tok)
}

// token advances the grammar by one string token.
func (p *Parser) token(t []byte) {
	expect := func(want string, next pstate) {
		if string(t) != want {
			p.fail(fmt.Sprintf("expected %q, got %q", want, clip(t)))
			return
		}
		p.state = next
	}
	switch p.state {
	case psMagic:
		expect(Magic, psOpen)
	case psOpen:
		expect("(", psType)
	case psType:
		expect("type", psTypeVal)
	case psTypeVal:
		switch string(t) {
		case "regular":
			p.cur.Type, p.state = TypeRegular, psRegAttr
		case "symlink":
			p.cur.Type, p.state = TypeSymlink, psTarget
		case "directory":
			p.cur.Type, p.state = TypeDirectory, psDir
			p.cur.Entries = map[string]*ListingNode{}
			p.stack = append(p.stack, p.cur)
			p.names = append(p.names, "")
		default:
			p.fail(fmt.Sprintf("unknown node type %q", clip(t)))
		}
	case psRegAttr:
		switch string(t) {
		case "executable":
			p.cur.Executable, p.state = true, psExecVal
		case "contents":
			p.state = psBody
		default:
			p.fail(fmt.Sprintf("expected \"executable\" or \"contents\", got %q", clip(t)))
		}
	case psExecVal:
		expect("", psContents)
	case psContents:
		expect("contents", psBody)
	case psTarget:
		expect("target", psTargetVal)
	case psTargetVal:
		if len(t) == 0 || bytes.IndexByte(t, 0) >= 0 {
			p.fail("symlink target is empty or holds a NUL byte")
			return
		}
		p.cur.Target, p.state = string(t), psClose
	case psClose:
		expect(")", psClose)
		if p.err == nil {
			p.closeNode()
		}
	case psDir:
		switch string(t) {
		case "entry":
			p.state = psEntry
		case ")":
			p.stack = p.stack[:len(p.stack)-1]
			p.names = p.names[:len(p.names)-1]
			p.closeNode()
		default:
			p.fail(fmt.Sprintf("expected \"entry\" or \")\", got %q", clip(t)))
		}
	case psEntry:
		expect("(", psName)
	case psName:
		expect("name", psNameVal)
	case psNameVal:
		name := string(t)
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
			p.fail(fmt.Sprintf("invalid entry name %q", clip(t)))
			return
		}
		last := &p.names[len(p.names)-1]
		if *last != "" && name <= *last {
			p.fail(fmt.Sprintf("entry %q not sorted after %q, or duplicate", clip(t), *last))
			return
		}
		*last = name
		p.curName, p.state = name, psNode
	case psNode:
		expect("node", psOpen)
		if p.err == nil {
			n := &ListingNode{}
			p.stack[len(p.stack)-1].Entries[p.curName] = n
			p.cur = n
		}
	case psEntryEnd:
		expect(")", psDir)
	}
	if p.state == psOpen && p.cur == nil && p.err == nil {
		p.cur = &ListingNode{}
		p.listing.Root = p.cur
	}
}

// closeNode is called after a node's ")" (a directory's is consumed in
// psDir): the root ends the archive, any other node its entry.
func (p *Parser) closeNode() {
	if len(p.stack) == 0 {
		p.done = true
		return
	}
	p.state = psEntryEnd
}

func clip(t []byte) string {
	if len(t) > 64 {
		return string(t[:64]) + "…"
	}
	return string(t)
}

// Size is the number of NAR bytes consumed so far.
func (p *Parser) Size() int64 { return p.off }

// Listing returns the archive's listing once the whole NAR was written,
// or the error that stopped the parse, or one saying it is incomplete.
func (p *Parser) Listing() (*Listing, error) {
	if p.err != nil {
		return nil, p.err
	}
	if !p.done || p.inTok || p.lenHave > 0 || p.padLeft > 0 {
		return nil, fmt.Errorf("nar: archive truncated after %d bytes", p.off)
	}
	return &p.listing, nil
}

// DebugInfoLink is one entry of the debug-info index Nix writes to a cache
// with index-debug-info=true: Key is debuginfo/<build-id> (the build ID
// is the two hex digits of the directory then the file name, ".debug"
// included, as Nix 2.8 names it) and Body the JSON
// {"archive":"../<NAR URL>","member":"lib/debug/.build-id/xx/yyyy.debug"}.
type DebugInfoLink struct {
	Key  string
	Body []byte
}

// DebugInfoLinks lists the debug-info links for the NAR at narURL
// (nar/….nar.xz) whose listing is l: one per regular file
// lib/debug/.build-id/<2 hex>/<38 hex>.debug, as Nix picks them.
func (l *Listing) DebugInfoLinks(narURL string) []DebugInfoLink {
	const dir = "lib/debug/.build-id"
	d := l.Lookup(dir)
	if d == nil || d.Type != TypeDirectory {
		return nil
	}
	var out []DebugInfoLink
	for _, s1 := range sortedNames(d.Entries) {
		sub := d.Entries[s1]
		if sub.Type != TypeDirectory || !isHex(s1, 2) {
			continue
		}
		for _, s2 := range sortedNames(sub.Entries) {
			f := sub.Entries[s2]
			base, ok := strings.CutSuffix(s2, ".debug")
			if f.Type != TypeRegular || !ok || !isHex(base, 38) {
				continue
			}
			member := dir + "/" + s1 + "/" + s2
			body := append([]byte(`{"archive":`), appendJSONString(nil, "../"+narURL)...)
			body = append(body, `,"member":`...)
			body = append(appendJSONString(body, member), '}')
			out = append(out, DebugInfoLink{Key: "debuginfo/" + s1 + s2, Body: body})
		}
	}
	return out
}

func sortedNames(m map[string]*ListingNode) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// isHex reports whether s is n lower-case hex digits.
func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
