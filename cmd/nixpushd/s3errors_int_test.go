package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// The mistakes people make setting a cache up, against real MinIO: each
// fails `push` at once (exit 1, no retries) with one line that names the
// problem, where the credentials came from, and the fix.
func TestPushS3ConfigErrors(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	cache := m.NewCache(t, "")
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	dir := t.TempDir()

	https := strings.Replace(cache.S3URL, "&scheme=http", "", 1)
	typo := strings.Replace(cache.S3URL, cache.Bucket, cache.Bucket+"x", 1)
	wrongSecret := []string{"AWS_ACCESS_KEY_ID=" + cache.AccessKey, "AWS_SECRET_ACCESS_KEY=not-the-secret"}
	root := []string{"AWS_ACCESS_KEY_ID=" + m.RootUser, "AWS_SECRET_ACCESS_KEY=" + m.RootPassword}

	credsFile := filepath.Join(dir, "s3.env")
	writeTestFile(t, credsFile, "AWS_ACCESS_KEY_ID="+cache.AccessKey+"\nAWS_SECRET_ACCESS_KEY=not-the-secret\n")
	home := filepath.Join(dir, "home")
	writeTestFile(t, filepath.Join(home, ".aws", "credentials"), "[nixbuilder]\naws_access_key_id=nobody-knows-me\naws_secret_access_key=x\n")

	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{"http endpoint without scheme=http", writerEnv(cache), []string{"--to", https},
			[]string{m.Endpoint + " speaks plain http", "add &scheme=http to the --to URL"}},
		{"typo'd bucket, writer credentials", writerEnv(cache), []string{"--to", typo},
			[]string{`bucket "` + cache.Bucket + `x" does not exist`, "does not exist or the credentials from environment (AWS_ACCESS_KEY_ID) lack permission", "check the bucket name", "arn:aws:s3:::" + cache.Bucket + "x"}},
		{"typo'd bucket, admin credentials", root, []string{"--to", typo},
			[]string{`bucket "` + cache.Bucket + `x" does not exist`, "mc mb"}},
		{"wrong secret in the environment", wrongSecret, []string{"--to", cache.S3URL},
			[]string{"access key or secret is wrong", "secret does not match the access key from environment (AWS_ACCESS_KEY_ID)"}},
		{"wrong secret in --credentials-file", nil, []string{"--to", cache.S3URL, "--credentials-file", credsFile},
			[]string{"access key or secret is wrong", "from --credentials-file"}},
		{"unknown key in a profile", []string{"HOME=" + home}, []string{"--to", cache.S3URL + "&profile=nixbuilder"},
			[]string{"access key or secret is wrong", "does not know the access key from " + filepath.Join(home, ".aws", "credentials") + " [nixbuilder]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			began := time.Now()
			out, err := nixpushd(t, tc.env, append(append([]string{"push", "--quiet"}, tc.args...), cl.Top)...)
			t.Logf("failed after %v:\n%s", time.Since(began).Round(time.Millisecond), out)
			assertExit(t, err, 1)
			assertLine(t, out, tc.want...)
			if strings.Contains(out, "not-the-secret") || strings.Contains(out, m.RootPassword) {
				t.Error("output leaks a secret")
			}
		})
	}
	if n := len(cache.Objects(t)); n != 0 {
		t.Errorf("%d objects written by failed pushes", n)
	}
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
