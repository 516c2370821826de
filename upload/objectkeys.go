package upload

import "github.com/nixpushd/nixpushd/nar"

// narinfoKey is the cache key of storePath's narinfo: its hash part.
func narinfoKey(storePath string) (string, error) {
	sp, err := nar.ParseStorePath(storePath)
	if err != nil {
		return "", err
	}
	return sp.Hash + ".narinfo", nil
}
