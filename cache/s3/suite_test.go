package s3

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/internal/cachetest"
	"github.com/nixpushd/nixpushd/internal/testenv"
)

// TestSuite runs the backend suite on real MinIO, every subtest on a new
// bucket. The credentials are a gc user's (testenv.GCActions: the
// writer's plus s3:DeleteObject, so that Delete is checked too), granted
// on every suite-* bucket once, so that a bucket costs one request rather
// than a round of mc commands. Parts are S3's smallest, 5 MiB, so that
// the suite's larger objects go up in several.
func TestSuite(t *testing.T) {
	m := testenv.StartMinIO(t)
	const user, secret = "nixgc-suite", "nixgc-suite-secret"
	policy, err := json.Marshal(map[string]any{
		"Version": "2012-10-17",
		"Statement": []map[string]any{{
			"Effect":   "Allow",
			"Action":   testenv.GCActions(),
			"Resource": []string{"arn:aws:s3:::suite-*", "arn:aws:s3:::suite-*/*"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	policyFile := filepath.Join(t.TempDir(), "suite.json")
	if err := os.WriteFile(policyFile, policy, 0o600); err != nil {
		t.Fatal(err)
	}
	m.MC(t, "admin", "user", "add", testenv.MCAlias, user, secret)
	m.MC(t, "admin", "policy", "create", testenv.MCAlias, "suite-gc", policyFile)
	m.MC(t, "admin", "policy", "attach", testenv.MCAlias, "suite-gc", "--user", user)
	root := m.RootClient(t)
	var n atomic.Int64
	cachetest.Suite(t, func(t *testing.T) cache.Target {
		bucket := fmt.Sprintf("suite-%d", n.Add(1))
		if err := root.MakeBucket(t.Context(), bucket, minio.MakeBucketOptions{Region: testenv.Region}); err != nil {
			t.Fatal(err)
		}
		url := fmt.Sprintf("s3://%s?endpoint=%s&region=%s&scheme=http", bucket, m.Endpoint, testenv.Region)
		cfg, err := ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		b, err := New(t.Context(), cfg, Options{
			Env:         map[string]string{"AWS_ACCESS_KEY_ID": user, "AWS_SECRET_ACCESS_KEY": secret},
			MinPartSize: 5 << 20,
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}
