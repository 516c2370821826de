package lifecycle

import (
	"slices"
	"testing"
)

// ParsePin never panics, and what it accepts formats back to the same
// paths.
func FuzzParsePin(f *testing.F) {
	f.Add([]byte(storePath("a") + "\n" + storePath("b") + "\n"))
	f.Add([]byte("# comment\n\n" + storePath(".dot") + "\n"))
	f.Add([]byte("/nix/store/short\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		paths, err := ParsePin(b)
		if err != nil {
			return
		}
		again, err := ParsePin(FormatPin(paths))
		if err != nil {
			t.Fatalf("formatted pin does not parse: %v", err)
		}
		if !slices.Equal(again, slices.Compact(slices.Sorted(slices.Values(paths)))) {
			t.Fatalf("round trip: %q -> %q", paths, again)
		}
	})
}

func TestPinNames(t *testing.T) {
	for _, ok := range []string{"system", "a.b-c_d", "X1"} {
		if err := CheckPinName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".hidden", "a/b", "a b", string(make([]byte, 101))} {
		if err := CheckPinName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
