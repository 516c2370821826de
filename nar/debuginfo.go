package nar

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
)

// ParseDebugInfoLink parses a debuginfo/<build-id> link as Nix writes it
// (index-debug-info=true), {"archive":"../nar/<file>","member":"…"}, and
// returns the key of the NAR it names (nar/<file>) and the member path in
// it. Unknown fields are allowed; a missing or odd archive is an error.
func ParseDebugInfoLink(b []byte) (narKey, member string, err error) {
	var l struct {
		Archive *string `json:"archive"`
		Member  *string `json:"member"`
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return "", "", fmt.Errorf("nar: debuginfo link: %w", err)
	}
	if l.Archive == nil || l.Member == nil {
		return "", "", errors.New("nar: debuginfo link: needs both archive and member")
	}
	// The link sits in debuginfo/: its archive is relative to that.
	key := path.Clean(path.Join("debuginfo", *l.Archive))
	if !strings.HasPrefix(key, "nar/") || strings.Contains(key[len("nar/"):], "/") {
		return "", "", fmt.Errorf("nar: debuginfo link: archive %q is not a NAR of the cache (../nar/<file>)", *l.Archive)
	}
	if *l.Member == "" {
		return "", "", errors.New("nar: debuginfo link: empty member")
	}
	return key, *l.Member, nil
}
