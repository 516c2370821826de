package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// loadEnvFile sets the variables of a systemd-style environment file
// (KEY=VALUE lines, # comments, optional quotes). Errors never echo values:
// the file holds secrets.
func loadEnvFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("--credentials-file: %w (it should hold AWS_ACCESS_KEY_ID=… and AWS_SECRET_ACCESS_KEY=… lines)", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return fmt.Errorf("--credentials-file %s line %d: want KEY=VALUE", path, n)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		os.Setenv(k, v)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("--credentials-file %s: %w", path, err)
	}
	return nil
}
