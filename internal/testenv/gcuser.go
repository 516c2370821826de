package testenv

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nixpushd/nixpushd/provision/policy"
)

// GCActions are the "nixgc" policy's actions: the writer's (gc also reads,
// lists and writes its lock) plus s3:DeleteObject, which only gc needs.
func GCActions() []string {
	actions := append(policy.WriterActions(), "s3:DeleteObject")
	slices.Sort(actions)
	return actions
}

// GCPolicy is the IAM policy document for the garbage collector's user on
// bucket, as docs/operations.md documents it (`mc admin policy create
// ALIAS nixgc nixgc.json`): GCActions on the bucket and its objects,
// nothing else.
func GCPolicy(bucket string) []byte {
	policy, err := json.MarshalIndent(map[string]any{
		"Id":      "NixCacheGC",
		"Version": "2012-10-17",
		"Statement": []map[string]any{{
			"Sid":      "NixCacheGC",
			"Action":   GCActions(),
			"Effect":   "Allow",
			"Resource": []string{"arn:aws:s3:::" + bucket, "arn:aws:s3:::" + bucket + "/*"},
		}},
	}, "", "  ")
	if err != nil {
		panic(err) // maps of strings always marshal
	}
	return append(policy, '\n')
}

// NewGCUser creates, with mc as NewCache does, a second user for the
// cache's bucket whose policy (named BUCKET-gc) is GCPolicy: the writer's
// permissions plus s3:DeleteObject, what `nixpushd gc` needs. It returns
// the new user's credentials; the writer's stay as they were.
func (c *Cache) NewGCUser(t testing.TB) (accessKey, secretKey string) {
	t.Helper()
	m := c.MinIO
	accessKey = "nixgc-" + randHex(4)
	secretKey = randHex(16)
	policyName := c.Bucket + "-gc"
	policyFile := filepath.Join(t.TempDir(), "nixgc.json")
	if err := os.WriteFile(policyFile, GCPolicy(c.Bucket), 0o600); err != nil {
		t.Fatal(err)
	}
	m.MC(t, "admin", "user", "add", MCAlias, accessKey, secretKey)
	m.MC(t, "admin", "policy", "create", MCAlias, policyName, policyFile)
	m.MC(t, "admin", "policy", "attach", MCAlias, policyName, "--user", accessKey)
	return accessKey, secretKey
}
