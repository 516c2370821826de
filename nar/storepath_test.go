package nar

import (
	"strings"
	"testing"
)

const testHash = "xmy64pbaynfirn4h6wwjanqsvy3129ps"

func TestParseStorePath(t *testing.T) {
	good := []struct{ in, name string }{
		{"/nix/store/" + testHash + "-b", "b"},
		{"/nix/store/" + testHash + "-hello-2.12.1", "hello-2.12.1"},
		{"/nix/store/" + testHash + "-a.drv", "a.drv"},
		{"/nix/store/" + testHash + "-A+b_c?d=e-f.g", "A+b_c?d=e-f.g"},
		{"/nix/store/" + testHash + "--", "-"},
		{"/nix/store/" + testHash + "-a..b", "a..b"},
		{"/nix/store/" + testHash + "-a.", "a."},
		// Nix allows leading dots unless the first component is "." or "..".
		{"/nix/store/" + testHash + "-.dotname", ".dotname"},
		{"/nix/store/" + testHash + "-..foo", "..foo"},
		{"/nix/store/" + testHash + "-.a-b", ".a-b"},
		{"/nix/store/" + testHash + "-...", "..."},
		{"/nix/store/" + testHash + "-...-x", "...-x"},
		{"/nix/store/" + testHash + "-.x-", ".x-"},
		{"/nix/store/" + testHash + "-._", "._"},
		{"/nix/store/" + testHash + "-" + strings.Repeat("x", 211), strings.Repeat("x", 211)},
	}
	for _, tc := range good {
		p, err := ParseStorePath(tc.in)
		if err != nil {
			t.Errorf("ParseStorePath(%q): %v", tc.in, err)
			continue
		}
		if p.Hash != testHash || p.Name != tc.name {
			t.Errorf("ParseStorePath(%q) = %+v", tc.in, p)
		}
		if p.String() != tc.in || p.Base() != strings.TrimPrefix(tc.in, "/nix/store/") {
			t.Errorf("ParseStorePath(%q) round trip: %q %q", tc.in, p.String(), p.Base())
		}
		if q, err := ParseBaseName(p.Base()); err != nil || q != p {
			t.Errorf("ParseBaseName(%q) = %+v, %v", p.Base(), q, err)
		}
	}

	bad := []struct{ in, why string }{
		{"", "not in"},
		{testHash + "-b", "not in"},
		{"nix/store/" + testHash + "-b", "not in"},
		{"/nix/store", "not in"},
		{"/nix/store/", "too short"},
		{"/nix/store//" + testHash + "-b", "not canonical"},
		{"/nix/store/" + testHash + "-b/", "trailing slash"},
		{"/nix/store/" + testHash + "-b/bin/sh", "inside a store path"},
		{"/nix/store/../" + testHash + "-b", "not canonical"},
		{"/nix/store/" + testHash + "-b/..", "not canonical"},
		{"/nix/store/..", "too short"},
		{"/nix/store/" + testHash + "-..", `must not be ".."`},
		{"/nix/store/" + testHash + "-.", `must not be "."`},
		{"/nix/store/" + testHash + "-.-x", `must not start with ".-"`},
		{"/nix/store/" + testHash + "-..-x", `must not start with "..-"`},
		{"/nix/store/" + testHash + "-.-", `must not start with ".-"`},
		{"/nix/store/" + testHash + "-..-", `must not start with "..-"`},
		{"/nix/store/" + testHash + "-.a b", "illegal character ' '"},
		{"/nix/store/./" + testHash + "-b", "not canonical"},
		{"/other/store/" + testHash + "-b", "not in"},
		{"/nix/storex/" + testHash + "-b", "not in"},
		{"/nix/store/" + testHash + "-", "too short"},
		{"/nix/store/" + testHash, "too short"},
		{"/nix/store/" + testHash[:31] + "-bc", "illegal character '-'"},
		{"/nix/store/" + testHash + "_b", "expected '-'"},
		{"/nix/store/" + "e" + testHash[1:] + "-b", "illegal character 'e'"},
		{"/nix/store/" + strings.ToUpper(testHash) + "-b", "hash part"},
		{"/nix/store/" + testHash + "-a b", "illegal character ' '"},
		{"/nix/store/" + testHash + "-a\x00b", "illegal character"},
		{"/nix/store/" + testHash + "-a\nb", "illegal character"},
		{"/nix/store/" + testHash + "-é", "illegal character"},
		{"/nix/store/" + testHash + "-a:b", "illegal character"},
		{"/nix/store/" + testHash + "-a~b", "illegal character"},
		{"/nix/store/" + testHash + "-" + strings.Repeat("x", 212), "longer"},
	}
	for _, tc := range bad {
		p, err := ParseStorePath(tc.in)
		if err == nil {
			t.Errorf("ParseStorePath(%q) = %+v, want error", tc.in, p)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.why) && !(tc.why == "longer" && strings.Contains(msg, "limit is 211")) {
			t.Errorf("ParseStorePath(%q) error %q, want it to mention %q", tc.in, msg, tc.why)
		}
		if strings.Contains(msg, "\n") {
			t.Errorf("ParseStorePath(%q) error spans lines: %q", tc.in, msg)
		}
	}

	for _, b := range []string{"", testHash, "/nix/store/" + testHash + "-b", testHash + "-b/c", testHash + "-"} {
		if _, err := ParseBaseName(b); err == nil {
			t.Errorf("ParseBaseName(%q) accepted", b)
		}
	}
}
