package nar

import "testing"

func TestParseDebugInfoLink(t *testing.T) {
	for _, tc := range []struct {
		in, key, member string
		ok              bool
	}{
		{`{"archive":"../nar/0abc.nar.xz","member":"lib/debug/.build-id/12/34.debug"}`, "nar/0abc.nar.xz", "lib/debug/.build-id/12/34.debug", true},
		{`{"member":"m","archive":"../nar/x.nar","extra":1}`, "nar/x.nar", "m", true},
		{`{"archive":"../x.nar","member":"m"}`, "", "", false},
		{`{"archive":"../nar/a/b.nar","member":"m"}`, "", "", false},
		{`{"archive":"../../nar/a.nar","member":"m"}`, "", "", false},
		{`{"archive":"../nar/a.nar"}`, "", "", false},
		{`{"archive":"../nar/a.nar","member":""}`, "", "", false},
		{`not json`, "", "", false},
	} {
		key, member, err := ParseDebugInfoLink([]byte(tc.in))
		if (err == nil) != tc.ok || key != tc.key || member != tc.member {
			t.Errorf("ParseDebugInfoLink(%s) = %q, %q, %v; want %q, %q, ok %v", tc.in, key, member, err, tc.key, tc.member, tc.ok)
		}
	}
	// What DebugInfoLinks writes (compared with real Nix elsewhere)
	// parses back.
	id := "cdef0123456789abcdef0123456789abcdef01"
	l := &Listing{Root: &ListingNode{Type: TypeDirectory, Entries: map[string]*ListingNode{
		"lib": {Type: TypeDirectory, Entries: map[string]*ListingNode{
			"debug": {Type: TypeDirectory, Entries: map[string]*ListingNode{
				".build-id": {Type: TypeDirectory, Entries: map[string]*ListingNode{
					"ab": {Type: TypeDirectory, Entries: map[string]*ListingNode{
						id + ".debug": {Type: TypeRegular, Size: 1},
					}},
				}},
			}},
		}},
	}}}
	links := l.DebugInfoLinks("nar/0abc.nar.xz")
	if len(links) != 1 {
		t.Fatalf("links: %q", links)
	}
	key, member, err := ParseDebugInfoLink(links[0].Body)
	if err != nil || key != "nar/0abc.nar.xz" || member != "lib/debug/.build-id/ab/"+id+".debug" {
		t.Errorf("round trip: %q, %q, %v", key, member, err)
	}
}

func FuzzParseDebugInfoLink(f *testing.F) {
	f.Add([]byte(`{"archive":"../nar/0abc.nar.xz","member":"lib/debug/.build-id/12/34.debug"}`))
	f.Add([]byte(`{"archive":"../../x","member":"m"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		key, member, err := ParseDebugInfoLink(b)
		if err != nil {
			return
		}
		if len(key) <= len("nar/") || key[:4] != "nar/" || member == "" {
			t.Fatalf("accepted %q as %q, %q", b, key, member)
		}
	})
}
