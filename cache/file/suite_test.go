package file

import (
	"testing"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/internal/cachetest"
)

func TestSuite(t *testing.T) {
	cachetest.Suite(t, func(t *testing.T) cache.Target {
		d, err := New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}
