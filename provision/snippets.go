package provision

import (
	"fmt"
	"strings"

	"github.com/nixpushd/nixpushd/cache/s3"
)

// SubstituterURL is what clients put in their substituters. A public
// bucket is read over plain HTTP(S), path-style for a custom endpoint
// (what the guides use: https://s3.homelab.local/nix-cache). A private one
// is read through Nix's S3 store, which needs credentials on the client.
func SubstituterURL(t s3.Config, public bool) string {
	if !public {
		t.Profile = ""
		return t.String()
	}
	if t.Endpoint != "" {
		scheme := t.Scheme
		if scheme == "" {
			scheme = "https"
		}
		return scheme + "://" + t.Endpoint + "/" + t.Bucket
	}
	host := "s3.amazonaws.com"
	if t.Region != "" && t.Region != "us-east-1" {
		host = "s3." + t.Region + ".amazonaws.com"
	}
	// A dotted bucket name does not match the wildcard certificate of a
	// virtual-hosted name: use path-style for it.
	if strings.Contains(t.Bucket, ".") {
		return "https://" + host + "/" + t.Bucket
	}
	return "https://" + t.Bucket + "." + host
}

// DefaultKeyName is the name of a key made on the machine named host:
// "HOST-nixpushd-1". Unique per builder, because Nix keeps one trusted key
// per name, and a cache's name (its endpoint) is the same on every
// builder. Characters a key name cannot hold are dropped.
func DefaultKeyName(host string) string {
	host = strings.Map(func(r rune) rune {
		if r == ':' || r <= ' ' || r == '/' || r == '\\' {
			return -1
		}
		return r
	}, host)
	if host == "" {
		host = "localhost"
	}
	return host + "-nixpushd-1"
}

// NixSettings is the NixOS snippet for every client.
func NixSettings(substituter, publicKey string) string {
	return fmt.Sprintf(`nix.settings = {
  extra-substituters = [ %q ];
  extra-trusted-public-keys = [ %q ];
};
`, substituter, publicKey)
}

// NixConf is the same for a client configured by /etc/nix/nix.conf.
func NixConf(substituter, publicKey string) string {
	return fmt.Sprintf("extra-substituters = %s\nextra-trusted-public-keys = %s\n", substituter, publicKey)
}

// ServiceSnippet is the NixOS snippet for the building machine. cacheURL
// carries no profile: the credentials file wins over one.
func ServiceSnippet(cacheURL, credentialsFile, secretKeyFile, caFile string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "services.nixpushd = {\n  enable = true;\n  cache.url = %q;\n", cacheURL)
	fmt.Fprintf(&b, "  credentialsFile = %q;\n  secretKeyFile = %q;\n", credentialsFile, secretKeyFile)
	if caFile != "" {
		fmt.Fprintf(&b, "  caFile = %q;\n", caFile)
	}
	b.WriteString("};\n")
	return b.String()
}

// CacheURL is the push URL for the daemon and push: the bucket's URL
// without a profile.
func CacheURL(t s3.Config) string {
	t.Profile = ""
	return t.String()
}
