package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// loadEnvFile reads the variables of a systemd-style environment file.
// They are not exported: child processes (nix path-info) must not inherit
// secrets. Errors never echo values.
func loadEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--credentials-file: %w (it should hold AWS_ACCESS_KEY_ID=… and AWS_SECRET_ACCESS_KEY=… lines)", err)
	}
	defer f.Close()
	vars, err := parseEnvFile(f)
	if err != nil {
		return nil, fmt.Errorf("--credentials-file %s: %w", path, err)
	}
	env := make(map[string]string, len(vars))
	for _, kv := range vars {
		env[kv[0]] = kv[1]
	}
	return env, nil
}

// parseEnvFile reads KEY=VALUE lines, # comments, an optional "export "
// and optional matching quotes around the value.
func parseEnvFile(r io.Reader) ([][2]string, error) {
	var vars [][2]string
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t\x00") || strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("line %d: want KEY=VALUE", n)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		vars = append(vars, [2]string{k, v})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return vars, nil
}
