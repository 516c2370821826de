package store

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/nixpushd/nixpushd/nar"
)

// CLI asks `nix path-info --json`. Its output format changed in Nix 2.19 (an
// object keyed by path instead of an array) and again later (structured
// hashes, base-name references), so parsing normalises every known shape.
type CLI struct {
	// Nix is the nix binary; "nix" when empty.
	Nix string
}

func NewCLI() *CLI { return &CLI{Nix: "nix"} }

func (c *CLI) Close() error { return nil }

func (c *CLI) run(ctx context.Context, args ...string) ([]byte, error) {
	full := append([]string{"--extra-experimental-features", "nix-command", "path-info", "--json"}, args...)
	cmd := exec.CommandContext(ctx, c.Nix, full...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "is not valid") || strings.Contains(msg, "does not exist") {
			return nil, fmt.Errorf("%s: %w", msg, ErrNotValid)
		}
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("run nix path-info: %w (is Nix installed and on PATH?)", err)
		}
		return nil, fmt.Errorf("nix path-info: %v: %s", err, msg)
	}
	return out, nil
}

func (c *CLI) PathInfos(ctx context.Context, paths []string) ([]*PathInfo, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	out, err := c.run(ctx, paths...)
	if err != nil {
		return nil, err
	}
	infos, err := ParsePathInfoJSON(out)
	if err != nil {
		return nil, err
	}
	byPath := make(map[string]*PathInfo, len(infos))
	for _, pi := range infos {
		byPath[pi.Path] = pi
	}
	res := make([]*PathInfo, 0, len(paths))
	for _, p := range paths {
		pi := byPath[p]
		if pi == nil {
			return nil, fmt.Errorf("%s: %w", p, ErrNotValid)
		}
		res = append(res, pi)
	}
	return res, nil
}

func (c *CLI) Closure(ctx context.Context, paths []string) ([]*PathInfo, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	out, err := c.run(ctx, append([]string{"--recursive"}, paths...)...)
	if err != nil {
		return nil, err
	}
	infos, err := ParsePathInfoJSON(out)
	if err != nil {
		return nil, err
	}
	return SortTopo(infos), nil
}

// DerivationOutputs asks `nix-store --query --outputs`.
func (c *CLI) DerivationOutputs(ctx context.Context, drv string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "nix-store", "--query", "--outputs", drv)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("nix-store --query --outputs %s: %v: %s", drv, err, strings.TrimSpace(stderr.String()))
	}
	return strings.Fields(string(out)), nil
}

// ValidPaths asks one path at a time: `nix path-info` fails the whole call
// on the first invalid path.
func (c *CLI) ValidPaths(ctx context.Context, paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		_, err := c.PathInfos(ctx, []string{p})
		if errors.Is(err, ErrNotValid) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func (c *CLI) RegisteredSince(context.Context, int64) ([]Registered, error) {
	return nil, errNoRegistrations
}

func (c *CLI) RegisteredAfter(context.Context, int64) ([]Registered, error) {
	return nil, errNoRegistrations
}

func (c *CLI) LastSeq(context.Context) (int64, error) { return 0, errNoRegistrations }

var errNoRegistrations = fmt.Errorf("registrations need read access to %s: %w", DefaultDB, errors.ErrUnsupported)

// jsonInfo is the union of the fields of every known format.
type jsonInfo struct {
	Path             string          `json:"path"`
	Valid            *bool           `json:"valid"`
	NarHash          json.RawMessage `json:"narHash"`
	NarSize          int64           `json:"narSize"`
	References       []string        `json:"references"`
	Deriver          *string         `json:"deriver"`
	Signatures       []string        `json:"signatures"`
	CA               json.RawMessage `json:"ca"`
	RegistrationTime *int64          `json:"registrationTime"`
	Ultimate         bool            `json:"ultimate"`
}

// ParsePathInfoJSON parses the output of `nix path-info --json` of any Nix
// version: an array of objects with "path" (≤ 2.18), or an object keyed by
// path (2.19+), with narHash as an SRI string or a structured object. Invalid
// paths (valid:false or null) are left out.
func ParsePathInfoJSON(b []byte) ([]*PathInfo, error) {
	b = bytes.TrimSpace(b)
	var raw []jsonInfo
	switch {
	case len(b) > 0 && b[0] == '[':
		if err := json.Unmarshal(b, &raw); err != nil {
			return nil, fmt.Errorf("parse nix path-info output: %w", err)
		}
	case len(b) > 0 && b[0] == '{':
		var m map[string]*jsonInfo
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("parse nix path-info output: %w", err)
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if m[k] == nil {
				continue // invalid path
			}
			ji := *m[k]
			if ji.Path == "" {
				ji.Path = k
			}
			raw = append(raw, ji)
		}
	default:
		return nil, fmt.Errorf("parse nix path-info output: unexpected %.40q", b)
	}
	out := make([]*PathInfo, 0, len(raw))
	for _, ji := range raw {
		if ji.Valid != nil && !*ji.Valid {
			continue
		}
		pi, err := ji.toPathInfo()
		if err != nil {
			return nil, err
		}
		out = append(out, pi)
	}
	return out, nil
}

func fullPath(p string) string {
	if p == "" || strings.HasPrefix(p, "/") {
		return p
	}
	return nar.StoreDir + "/" + p
}

func (ji *jsonInfo) toPathInfo() (*PathInfo, error) {
	path := fullPath(ji.Path)
	h, err := parseJSONHash(ji.NarHash)
	if err != nil {
		return nil, fmt.Errorf("%s: narHash: %w", path, err)
	}
	pi := &PathInfo{
		Path:       path,
		NarHash:    h,
		NarSize:    ji.NarSize,
		References: make([]string, 0, len(ji.References)),
		Sigs:       ji.Signatures,
		Ultimate:   ji.Ultimate,
	}
	for _, r := range ji.References {
		pi.References = append(pi.References, fullPath(r))
	}
	sort.Strings(pi.References)
	if ji.Deriver != nil {
		pi.Deriver = fullPath(*ji.Deriver)
	}
	if ji.RegistrationTime != nil {
		pi.RegistrationTime = time.Unix(*ji.RegistrationTime, 0)
	}
	if len(ji.CA) > 0 && string(ji.CA) != "null" {
		var s string
		if err := json.Unmarshal(ji.CA, &s); err == nil {
			pi.CA = s
		} else {
			// Newer Nix writes CA as an object; it is only needed to re-emit
			// the CA: line, which old-style text preserves, so keep it when we
			// can render it and drop it otherwise (the path then looks
			// input-addressed, which Nix still accepts when signed).
			pi.CA = caFromObject(ji.CA)
		}
	}
	return pi, nil
}

func parseJSONHash(raw json.RawMessage) (nar.Hash, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nar.Hash{}, errors.New("missing")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return nar.ParseHash(s)
	}
	// Structured forms: {"algorithm":"sha256","format":"base64","hash":"…"}
	// (Nix 2.33) and {"algo":"sha256","base16":"…"}.
	var o map[string]string
	if err := json.Unmarshal(raw, &o); err != nil {
		return nar.Hash{}, fmt.Errorf("unrecognised %.60s", raw)
	}
	algo := o["algorithm"]
	if algo == "" {
		algo = o["algo"]
	}
	var digest []byte
	var err error
	switch {
	case o["base16"] != "":
		digest, err = hex.DecodeString(o["base16"])
	case o["hash"] != "" && (o["format"] == "base64" || o["format"] == ""):
		digest, err = base64.StdEncoding.DecodeString(o["hash"])
	case o["hash"] != "" && o["format"] == "base16":
		digest, err = hex.DecodeString(o["hash"])
	case o["hash"] != "" && (o["format"] == "nix32" || o["format"] == "base32"):
		digest, err = nar.NixBase32.DecodeString(o["hash"])
	default:
		return nar.Hash{}, fmt.Errorf("unrecognised %.60s", raw)
	}
	if err != nil {
		return nar.Hash{}, fmt.Errorf("%.60s: %w", raw, err)
	}
	return nar.ParseHash(algo + ":" + hex.EncodeToString(digest))
}

// caFromObject renders the structured CA of newer Nix ({"method":"nar",
// "hash":{…}}) in the text form narinfo uses ("fixed:r:sha256:…").
func caFromObject(raw json.RawMessage) string {
	var o struct {
		Method string          `json:"method"`
		Hash   json.RawMessage `json:"hash"`
	}
	if json.Unmarshal(raw, &o) != nil {
		return ""
	}
	h, err := parseJSONHash(o.Hash)
	if err != nil {
		return ""
	}
	switch o.Method {
	case "nar":
		return "fixed:r:" + h.String()
	case "flat":
		return "fixed:" + h.String()
	case "text":
		return "text:" + h.String()
	}
	return ""
}
