package policy

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// The writer policy is the guides' nix-cache-write.json, byte for byte
// once the JSON is normalised, with the bucket and user substituted.
func TestWriterIsTheSeeds(t *testing.T) {
	seed := `{
  "Id": "AuthenticatedWrite",
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "AuthenticatedWrite",
      "Action": [
        "s3:AbortMultipartUpload",
        "s3:GetBucketLocation",
        "s3:GetObject",
        "s3:ListBucket",
        "s3:ListBucketMultipartUploads",
        "s3:ListMultipartUploadParts",
        "s3:PutObject"
      ],
      "Effect": "Allow",
      "Resource": ["arn:aws:s3:::nix-cache", "arn:aws:s3:::nix-cache/*"],
      "Principal": "nixbuilder"
    }
  ]
}`
	var want, got bytes.Buffer
	if err := json.Compact(&want, []byte(seed)); err != nil {
		t.Fatal(err)
	}
	if err := json.Compact(&got, Writer("nix-cache", "nixbuilder")); err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Errorf("Writer:\n got %s\nwant %s", got.String(), want.String())
	}
	if strings.Contains(string(Writer("nix-cache", "nixbuilder")), "Delete") {
		t.Error("the writer policy grants a delete")
	}
	if strings.Contains(string(Identity("b")), "Principal") {
		t.Error("Identity has a Principal, which AWS IAM rejects in a user policy")
	}
	if !Same(Identity("nix-cache"), Writer("nix-cache", "nixbuilder"), false) {
		t.Error("Identity grants something else than Writer")
	}
}

func TestSame(t *testing.T) {
	// What MinIO gives back for the seed policy: actions reordered, "ID",
	// no Principal.
	minioWriter := `{"ID":"AuthenticatedWrite","Version":"2012-10-17","Statement":[{"Sid":"AuthenticatedWrite","Effect":"Allow","Action":["s3:ListBucketMultipartUploads","s3:ListMultipartUploadParts","s3:PutObject","s3:AbortMultipartUpload","s3:GetBucketLocation","s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::t1/*","arn:aws:s3:::t1"]}]}`
	// What `mc anonymous get-json` shows after `mc anonymous set download`.
	mcDownload := `{"Statement":[{"Action":["s3:GetBucketLocation","s3:ListBucket"],"Effect":"Allow","Principal":{"AWS":["*"]},"Resource":["arn:aws:s3:::tt1"]},{"Action":["s3:GetObject"],"Effect":"Allow","Principal":{"AWS":["*"]},"Resource":["arn:aws:s3:::tt1/*"]}],"Version":"2012-10-17"}`
	tests := []struct {
		name          string
		a, b          string
		withPrincipal bool
		want          bool
	}{
		{"minio's copy of the seed policy", minioWriter, string(Writer("t1", "nixbuilder")), false, true},
		{"another bucket", minioWriter, string(Writer("t2", "nixbuilder")), false, false},
		{"plus delete", strings.Replace(minioWriter, `"s3:PutObject"`, `"s3:PutObject","s3:DeleteObject"`, 1), string(Writer("t1", "x")), false, false},
		{"mc download", mcDownload, string(Download("tt1")), true, true},
		{"bare * principal and single strings", `{"Statement":[{"Action":"s3:GetObject","Effect":"Allow","Principal":"*","Resource":"arn:aws:s3:::tt1/*"},{"Action":["s3:ListBucket","s3:GetBucketLocation"],"Effect":"Allow","Principal":{"AWS":"*"},"Resource":["arn:aws:s3:::tt1"]}]}`, string(Download("tt1")), true, true},
		{"public upload is not download", strings.Replace(mcDownload, `["s3:GetObject"]`, `["s3:GetObject","s3:PutObject"]`, 1), string(Download("tt1")), true, false},
		{"one user, not anyone", strings.ReplaceAll(mcDownload, `"*"`, `"arn:aws:iam::1:root"`), string(Download("tt1")), true, false},
		{"a condition", strings.Replace(mcDownload, `"Effect":"Allow",`, `"Effect":"Allow","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}},`, 1), string(Download("tt1")), true, false},
		{"not JSON", "{", string(Download("tt1")), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Same([]byte(tt.a), []byte(tt.b), tt.withPrincipal); got != tt.want {
				t.Errorf("Same = %v, want %v", got, tt.want)
			}
		})
	}
}
