package main

import (
	"testing"
	"time"
)

func TestParseAge(t *testing.T) {
	for in, want := range map[string]time.Duration{"30d": 30 * 24 * time.Hour, "0": 0, "12h": 12 * time.Hour, "1h30m": 90 * time.Minute, "0d": 0} {
		if got, err := parseAge(in); err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1d", "1w", "d", "1.5d", "-5m", "30 d"} {
		if _, err := parseAge(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseAge(f *testing.F) {
	for _, s := range []string{"30d", "1h", "0", "1h30m", "999999999999d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseAge(s)
		if err == nil && d < 0 {
			t.Fatalf("%q parsed to a negative age %v", s, d)
		}
	})
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"4G": 4 << 30, "512M": 512 << 20, "64k": 64 << 10, "1048576": 1 << 20, "2GiB": 2 << 30, "1T": 1 << 40} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1G", "G", "1.5G", "99999999999T"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"4G", "512M", "1", "8EiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := parseSize(s); err == nil && n <= 0 {
			t.Fatalf("%q parsed to %d", s, n)
		}
	})
}

func TestAgeString(t *testing.T) {
	for d, want := range map[time.Duration]string{time.Hour: "1h", 30 * 24 * time.Hour: "30d", 90 * time.Minute: "1h30m", 0: "0s", 2 * time.Second: "2s", 90 * time.Second: "1m30s"} {
		if got := (ageFlag{&d}).String(); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}
