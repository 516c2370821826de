package nar

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// A key made by `nix key generate-secret --key-name test-1`; the public key
// is what `nix key convert-secret-to-public` printed for it.
const (
	testSecretKey = "test-1:vmgonhTr9OL8ZK5fANIwzqSKzebx+kbbkefSYTWSEJo8KORswMPKb01bQ3rc9bOGZ3R1x6sg+u6u76UJjQCg4w=="
	testPublicKey = "test-1:PCjkbMDDym9NW0N63PWzhmd0dcerIPruru+lCY0AoOM="
)

func TestKeys(t *testing.T) {
	sk, err := ParseSecretKey("  " + testSecretKey + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if sk.Name != "test-1" || len(sk.Key) != ed25519.PrivateKeySize {
		t.Fatalf("ParseSecretKey = %q, %d bytes", sk.Name, len(sk.Key))
	}
	if got := sk.Public().String(); got != testPublicKey {
		t.Errorf("Public() = %s, want %s", got, testPublicKey)
	}
	pk, err := ParsePublicKey(testPublicKey + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if pk.String() != testPublicKey {
		t.Errorf("PublicKey.String() = %s", pk.String())
	}

	msg := []byte("1;/nix/store/xmy64pbaynfirn4h6wwjanqsvy3129ps-b;sha256:0vvl22a1xbsb0yq3hcwfkckydmria54dxxyb38qdnqyjszsp52qn;160;")
	sig := sk.Sign(msg)
	if !strings.HasPrefix(sig, "test-1:") || !pk.Verify(msg, sig) {
		t.Fatalf("Sign/Verify failed: %s", sig)
	}
	if pk.Verify(append(msg, 'x'), sig) {
		t.Error("Verify accepted a different message")
	}
	other := &PublicKey{Name: "test-2", Key: pk.Key}
	if other.Verify(msg, sig) {
		t.Error("Verify accepted a signature made under another key name")
	}
	for _, bad := range []string{"", "test-1", "test-1:", "test-1:!!!", "test-1:" + base64.StdEncoding.EncodeToString([]byte("short")), sig + "x"} {
		if pk.Verify(msg, bad) {
			t.Errorf("Verify accepted %q", bad)
		}
	}

	// Printing a secret key must not reveal it.
	secretB64 := testSecretKey[len("test-1:"):]
	for _, s := range []string{fmt.Sprint(sk), fmt.Sprintf("%v %s %+v %#v", sk, sk, sk, sk)} {
		if strings.Contains(s, secretB64[:20]) || strings.Contains(s, fmt.Sprint([]byte(sk.Key))) {
			t.Errorf("formatting a SecretKey leaks it: %s", s)
		}
	}
}

func TestParseKeyErrors(t *testing.T) {
	secretB64 := testSecretKey[len("test-1:"):]
	raw, _ := base64.StdEncoding.DecodeString(secretB64)
	mismatched := append([]byte(nil), raw...)
	mismatched[40] ^= 1
	tests := []struct{ in, want string }{
		{"", "NAME:BASE64"},
		{secretB64, "NAME:BASE64"},
		{":" + secretB64, "NAME:BASE64"},
		{"test-1:", "NAME:BASE64"},
		{"test-1:" + secretB64[:40] + "!!" + secretB64[42:], "not valid base64"},
		{testPublicKey, "is this a public key?"},
		{"test-1:" + base64.StdEncoding.EncodeToString(mismatched), "public half does not match"},
	}
	for _, tc := range tests {
		_, err := ParseSecretKey(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseSecretKey(%q) error %v, want %q", tc.in, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), secretB64[:16]) || strings.Contains(err.Error(), secretB64[42:60]) {
			t.Errorf("error leaks key material: %v", err)
		}
	}
	for _, s := range []string{"", "test-1", testSecretKey, "test-1:AAAA"} {
		if _, err := ParsePublicKey(s); err == nil {
			t.Errorf("ParsePublicKey(%q) accepted", s)
		}
	}
}

func TestLoadSecretKeyFile(t *testing.T) {
	dir := t.TempDir()
	good := dir + "/good.sec"
	if err := os.WriteFile(good, []byte(testSecretKey), 0o600); err != nil {
		t.Fatal(err)
	}
	if k, err := LoadSecretKeyFile(good); err != nil || k.Public().String() != testPublicKey {
		t.Fatalf("LoadSecretKeyFile: %v", err)
	}

	bad := dir + "/bad.sec"
	if err := os.WriteFile(bad, []byte(testPublicKey), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{dir + "/missing.sec", bad} {
		_, err := LoadSecretKeyFile(path)
		if err == nil {
			t.Fatalf("LoadSecretKeyFile(%s) succeeded", path)
		}
		// Never a command that writes over the file: it may be the public key.
		if msg := err.Error(); !strings.Contains(msg, path) || strings.Contains(msg, "> "+path) {
			t.Errorf("error should name the file and suggest no command writing to it: %s", msg)
		}
	}
	if _, err := LoadSecretKeyFile(dir + "/missing.sec"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want os.ErrNotExist", err)
	}
	var pke *PublicKeyError
	if _, err := LoadSecretKeyFile(bad); !errors.As(err, &pke) || pke.Name != "test-1" || pke.Path != bad {
		t.Errorf("public key as secret key: %v, want a PublicKeyError naming test-1", err)
	}
}

func TestGenerateSecretKeyRoundTrip(t *testing.T) {
	k, err := GenerateSecretKey("test-cache-1")
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseSecretKey(k.Encode())
	if err != nil {
		t.Fatalf("ParseSecretKey(Encode()): %v", err)
	}
	if back.Name != "test-cache-1" || !back.Key.Equal(k.Key) {
		t.Fatalf("round trip changed the key: %s", back)
	}
	msg := []byte("1;/nix/store/x")
	if !k.Public().Verify(msg, back.Sign(msg)) {
		t.Fatal("signature by the parsed key does not verify with the generated public key")
	}
	for _, bad := range []string{"", "a:b", "has space"} {
		if _, err := GenerateSecretKey(bad); err == nil {
			t.Errorf("GenerateSecretKey(%q) accepted a bad name", bad)
		}
	}
}

func TestNewSecretKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/secret-key"
	k, err := NewSecretKeyFile(path, "test-cache-1")
	if err != nil {
		t.Fatal(err)
	}
	if back, err := LoadSecretKeyFile(path); err != nil || !back.Key.Equal(k.Key) || back.Name != "test-cache-1" {
		t.Fatalf("LoadSecretKeyFile of the new file: %v, %v", back, err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v; want 0600", st.Mode().Perm(), err)
	}
	// Never over an existing key.
	if _, err := NewSecretKeyFile(path, "test-cache-2"); !errors.Is(err, os.ErrExist) {
		t.Errorf("over an existing file: %v, want ErrExist", err)
	}
	if back, _ := LoadSecretKeyFile(path); back == nil || back.Name != "test-cache-1" {
		t.Errorf("the existing key was replaced: %v", back)
	}
	var ke *KeyError
	if _, err := NewSecretKeyFile(dir+"/other", "a:b"); !errors.As(err, &ke) {
		t.Errorf("bad name: %v, want a *KeyError", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%s holds %d entries, want 1", dir, len(ents))
	}
}

// Errors start with "nar: "; ErrorReason is the rest, for callers' own
// messages.
func TestKeyErrorReason(t *testing.T) {
	dir := t.TempDir()
	bad, pub := dir+"/bad", dir+"/pub"
	os.WriteFile(bad, []byte("test-1:AAAA\n"), 0o600)
	os.WriteFile(pub, []byte(testPublicKey), 0o600)
	_, badName := GenerateSecretKey("a b")
	_, badFile := LoadSecretKeyFile(bad)
	_, pubFile := LoadSecretKeyFile(pub)
	_, missing := LoadSecretKeyFile(dir + "/missing")
	for _, tc := range []struct {
		err  error
		want string
	}{
		{badName, `key name "a b": use a non-empty name without ':' or spaces, e.g. cache.example.org-1`},
		{badFile, `secret key file ` + bad + `: secret key "test-1": key data is 3 bytes, want 64`},
		{pubFile, `secret key file ` + pub + ` holds the public key test-1, not a secret key`},
		{missing, `secret key file: open ` + dir + `/missing: no such file or directory`},
	} {
		if got := ErrorReason(tc.err); got != tc.want {
			t.Errorf("ErrorReason = %q, want %q", got, tc.want)
		}
		if got := tc.err.Error(); got != "nar: "+tc.want {
			t.Errorf("Error = %q, want %q", got, "nar: "+tc.want)
		}
	}
	if got := ErrorReason(errors.New("nar: other")); got != "nar: other" {
		t.Errorf("ErrorReason of another error = %q", got)
	}
}
