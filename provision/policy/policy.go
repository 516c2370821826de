package policy

import (
	"encoding/json"
	"fmt"
	"slices"
)

// writerActions are the seed guides' least-privilege writer actions: read,
// list and write, and notably no s3:DeleteObject.
var writerActions = []string{
	"s3:AbortMultipartUpload",
	"s3:GetBucketLocation",
	"s3:GetObject",
	"s3:ListBucket",
	"s3:ListBucketMultipartUploads",
	"s3:ListMultipartUploadParts",
	"s3:PutObject",
}

// WriterActions returns the writer's actions, sorted (a copy).
func WriterActions() []string { return slices.Clone(writerActions) }

// Writer is the guides' nix-cache-write.json with the bucket and the
// writer's name substituted, key for key. MinIO accepts the Principal and
// drops it (identity policies apply to whoever they are attached to).
func Writer(bucket, user string) []byte {
	type statement struct {
		Sid       string
		Action    []string
		Effect    string
		Resource  []string
		Principal string `json:",omitempty"`
	}
	return mustJSON(struct {
		Id        string
		Version   string
		Statement []statement
	}{
		Id:      "AuthenticatedWrite",
		Version: "2012-10-17",
		Statement: []statement{{
			Sid:       "AuthenticatedWrite",
			Action:    writerActions,
			Effect:    "Allow",
			Resource:  bucketResources(bucket),
			Principal: user,
		}},
	})
}

// Identity is Writer without the Principal, for servers whose
// IAM rejects a Principal in a user policy (AWS: "Policy document should
// not specify a principal").
func Identity(bucket string) []byte { return Writer(bucket, "") }

// Download is the bucket policy `mc anonymous set download` sets:
// anyone may locate and list the bucket and read its objects, nothing
// more.
func Download(bucket string) []byte {
	type principal struct{ AWS []string }
	type statement struct {
		Action    []string
		Effect    string
		Principal principal
		Resource  []string
	}
	return mustJSON(struct {
		Statement []statement
		Version   string
	}{
		Statement: []statement{
			{Action: []string{"s3:GetBucketLocation", "s3:ListBucket"}, Effect: "Allow", Principal: principal{[]string{"*"}}, Resource: []string{"arn:aws:s3:::" + bucket}},
			{Action: []string{"s3:GetObject"}, Effect: "Allow", Principal: principal{[]string{"*"}}, Resource: []string{"arn:aws:s3:::" + bucket + "/*"}},
		},
		Version: "2012-10-17",
	})
}

func bucketResources(bucket string) []string {
	return []string{"arn:aws:s3:::" + bucket, "arn:aws:s3:::" + bucket + "/*"}
}

func mustJSON(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err) // structs of strings always marshal
	}
	return append(b, '\n')
}

// stringSet decodes an IAM value that may be one string or a list.
type stringSet []string

func (s *stringSet) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = stringSet{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

// principalSet decodes "*", "name", {"AWS": "*"} or {"AWS": [...]}.
type principalSet []string

func (p *principalSet) UnmarshalJSON(b []byte) error {
	// A bare "*" or name means an AWS principal, as {"AWS": …} does.
	var s stringSet
	if err := json.Unmarshal(b, &s); err == nil {
		for _, x := range s {
			*p = append(*p, "AWS:"+x)
		}
		return nil
	}
	var m map[string]stringSet
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	for k, v := range m {
		for _, x := range v {
			*p = append(*p, k+":"+x)
		}
	}
	return nil
}

// statementKey is one statement reduced to what it grants, in a form that
// compares equal however a server reorders or respells the document (MinIO
// sorts actions, writes "ID" for "Id" and drops an identity policy's
// Principal).
type statementKey struct {
	Effect, Principal, Action, NotAction, Resource, Condition string
}

// policyGrants reduces a policy document to its sorted statement keys.
// withPrincipal is false for identity policies, whose Principal servers
// ignore.
func policyGrants(doc []byte, withPrincipal bool) ([]statementKey, error) {
	var p struct {
		Statement []struct {
			Effect    string
			Principal principalSet
			Action    stringSet
			NotAction stringSet
			Resource  stringSet
			Condition json.RawMessage
		}
	}
	if err := json.Unmarshal(doc, &p); err != nil {
		return nil, fmt.Errorf("policy document: %w", err)
	}
	norm := func(s []string) string {
		s = slices.Clone(s)
		slices.Sort(s)
		b, _ := json.Marshal(slices.Compact(s))
		return string(b)
	}
	var keys []statementKey
	for _, st := range p.Statement {
		k := statementKey{Effect: st.Effect, Action: norm(st.Action), NotAction: norm(st.NotAction), Resource: norm(st.Resource)}
		if withPrincipal {
			k.Principal = norm(st.Principal)
		}
		if len(st.Condition) > 0 && string(st.Condition) != "{}" && string(st.Condition) != "null" {
			k.Condition = string(st.Condition)
		}
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b statementKey) int {
		return slices.Compare(
			[]string{a.Effect, a.Principal, a.Action, a.NotAction, a.Resource, a.Condition},
			[]string{b.Effect, b.Principal, b.Action, b.NotAction, b.Resource, b.Condition})
	})
	return keys, nil
}

// Same reports whether two policy documents grant the same thing.
// A document that does not parse is never the same.
func Same(a, b []byte, withPrincipal bool) bool {
	ka, err := policyGrants(a, withPrincipal)
	if err != nil {
		return false
	}
	kb, err := policyGrants(b, withPrincipal)
	if err != nil {
		return false
	}
	return slices.Equal(ka, kb)
}
