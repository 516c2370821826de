package store

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

func TestOpenBuildLog(t *testing.T) {
	bzip2 := testenv.LookPath(t, "bzip2", "apt-get install bzip2")
	const drv = "/nix/store/9sgk06jv6kb6kacz77nc5wb91f6nsn1z-c.drv"
	plainText := []byte("plain log\n")
	bz2Text := bytes.Repeat([]byte("compressed log line\n"), 1000)
	cmd := exec.Command(bzip2, "-c")
	cmd.Stdin = bytes.NewReader(bz2Text)
	bz2Body, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		plain    []byte // nil: no file
		bz2      []byte
		want     []byte // nil: ErrNoBuildLog
		wantSize int64
	}{
		{name: "none"},
		{name: "plain", plain: plainText, want: plainText, wantSize: int64(len(plainText))},
		{name: "bzip2", bz2: bz2Body, want: bz2Text, wantSize: -1},
		{name: "both: plain first, as Nix reads", plain: plainText, bz2: bz2Body, want: plainText, wantSize: int64(len(plainText))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			plain, bz2, err := BuildLogFile(dir, drv)
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(dir, "drvs", "9s", "gk06jv6kb6kacz77nc5wb91f6nsn1z-c.drv"); plain != want || bz2 != want+".bz2" {
				t.Fatalf("BuildLogFile = %s, %s; want %s[.bz2]", plain, bz2, want)
			}
			os.MkdirAll(filepath.Dir(plain), 0o755)
			if tc.plain != nil {
				os.WriteFile(plain, tc.plain, 0o644)
			}
			if tc.bz2 != nil {
				os.WriteFile(bz2, tc.bz2, 0o644)
			}
			r, size, err := OpenBuildLog(dir, drv)
			if tc.want == nil {
				if !errors.Is(err, ErrNoBuildLog) {
					t.Fatalf("err = %v, want ErrNoBuildLog", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) || size != tc.wantSize {
				t.Errorf("got %d bytes (size %d), want %d bytes (size %d)", len(got), size, len(tc.want), tc.wantSize)
			}
		})
	}
	t.Run("corrupt bzip2", func(t *testing.T) {
		dir := t.TempDir()
		_, bz2, _ := BuildLogFile(dir, drv)
		os.MkdirAll(filepath.Dir(bz2), 0o755)
		os.WriteFile(bz2, []byte("BZh9 not really"), 0o644)
		r, _, err := OpenBuildLog(dir, drv)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := io.ReadAll(r); err == nil {
			t.Error("a corrupt .bz2 read without error")
		}
	})
	if _, _, err := BuildLogFile(t.TempDir(), "/nix/store/9sgk06jv6kb6kacz77nc5wb91f6nsn1z-c"); err == nil {
		t.Error("BuildLogFile accepted a path that is not a .drv")
	}
}
