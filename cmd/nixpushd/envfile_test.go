package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseEnvFile(t *testing.T) {
	vars, err := parseEnvFile(strings.NewReader("# creds\n\nAWS_ACCESS_KEY_ID=nixbuilder\nexport AWS_SECRET_ACCESS_KEY=\"s3cr=t\"\nAWS_PROFILE='x y'\n"))
	want := [][2]string{{"AWS_ACCESS_KEY_ID", "nixbuilder"}, {"AWS_SECRET_ACCESS_KEY", "s3cr=t"}, {"AWS_PROFILE", "x y"}}
	if err != nil || !reflect.DeepEqual(vars, want) {
		t.Errorf("got %v, %v", vars, err)
	}
	for _, bad := range []string{"NOEQUALS\n", "=value\n", "TWO WORDS=x\n"} {
		_, err := parseEnvFile(strings.NewReader("A=1\n" + bad))
		if err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%q: %v, want an error naming line 2", bad, err)
		}
	}
	// Errors must not echo the secret.
	_, err = parseEnvFile(strings.NewReader("SECRET hunter2\n"))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %v leaks the value", err)
	}
}

func FuzzParseEnvFile(f *testing.F) {
	f.Add("AWS_ACCESS_KEY_ID=a\nAWS_SECRET_ACCESS_KEY=\"b\"\n")
	f.Add("# c\nexport K='v'\n")
	f.Add("=\n")
	f.Fuzz(func(t *testing.T, s string) {
		vars, err := parseEnvFile(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, kv := range vars {
			if kv[0] == "" || strings.ContainsAny(kv[0], " \t=\x00") || strings.ContainsRune(kv[1], 0) {
				t.Fatalf("accepted bad variable %q=%q", kv[0], kv[1])
			}
		}
	})
}
