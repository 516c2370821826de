package nar

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nixpushd/nixpushd/internal/fsutil"
)

// SecretKey is a Nix signing key, "name:base64(64 bytes)" on disk.
type SecretKey struct {
	Name string
	Key  ed25519.PrivateKey
}

// PublicKey is a Nix public key, "name:base64(32 bytes)".
type PublicKey struct {
	Name string
	Key  ed25519.PublicKey
}

// KeyError is a key, key name or key file that cannot be used. Error
// starts with "nar: "; Reason is the same text without it, for a message
// that says for itself what it is about (a flag, a file).
type KeyError struct {
	File string // the secret key file whose content is wrong, or ""
	Msg  string // what is wrong
	Err  error  // the cause, such as reading the file failed, or nil
}

func keyErrorf(format string, args ...any) *KeyError {
	return &KeyError{Msg: fmt.Sprintf(format, args...)}
}

func (e *KeyError) Error() string { return "nar: " + e.Reason() }

// Reason is Error without the package's "nar: ".
func (e *KeyError) Reason() string {
	if e.File != "" {
		return "secret key file " + e.File + ": " + e.Msg
	}
	return e.Msg
}

func (e *KeyError) Unwrap() error { return e.Err }

// ErrorReason is the text of an error from this file's functions (a
// *KeyError or a *PublicKeyError) without its "nar: "; any other error's
// text as it is.
func ErrorReason(err error) string {
	var r interface{ Reason() string }
	if errors.As(err, &r) {
		return r.Reason()
	}
	return err.Error()
}

// splitKey splits "name:data" and decodes data. Errors never quote data.
func splitKey(what, s string) (string, []byte, error) {
	name, data, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || name == "" || data == "" {
		return "", nil, keyErrorf("%s is not in the form NAME:BASE64", what)
	}
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return "", nil, keyErrorf("%s %q: key data is not valid base64", what, name)
	}
	return name, raw, nil
}

// ParseSecretKey parses a key as `nix key generate-secret` writes it.
func ParseSecretKey(s string) (*SecretKey, error) {
	name, raw, err := splitKey("secret key", s)
	if err != nil {
		return nil, err
	}
	if len(raw) != ed25519.PrivateKeySize {
		hint := ""
		if len(raw) == ed25519.PublicKeySize {
			hint = " (is this a public key?)"
		}
		return nil, keyErrorf("secret key %q: key data is %d bytes, want %d%s", name, len(raw), ed25519.PrivateKeySize, hint)
	}
	key := ed25519.PrivateKey(raw)
	// A mismatched public half would yield signatures nobody can verify.
	if !bytes.Equal(ed25519.NewKeyFromSeed(key.Seed())[32:], key[32:]) {
		return nil, keyErrorf("secret key %q is corrupt: its public half does not match its seed", name)
	}
	return &SecretKey{Name: name, Key: key}, nil
}

// LoadSecretKeyFile reads and parses a secret key file. Its errors name
// the file and what is wrong with it; how to fix it is the caller's to
// say (a command that writes the file would overwrite a public key given
// by mistake).
func LoadSecretKeyFile(path string) (*SecretKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &KeyError{Msg: "secret key file: " + err.Error(), Err: err}
	}
	k, err := ParseSecretKey(string(b))
	if err != nil {
		if pk, perr := ParsePublicKey(string(b)); perr == nil {
			return nil, &PublicKeyError{Path: path, Name: pk.Name}
		}
		return nil, &KeyError{File: path, Msg: ErrorReason(err)}
	}
	return k, nil
}

// PublicKeyError is a public key found where a secret key was expected.
type PublicKeyError struct{ Path, Name string }

func (e *PublicKeyError) Error() string { return "nar: " + e.Reason() }

// Reason is Error without the package's "nar: ".
func (e *PublicKeyError) Reason() string {
	return fmt.Sprintf("secret key file %s holds the public key %s, not a secret key", e.Path, e.Name)
}

// ParsePublicKey parses "name:base64(32 bytes)".
func ParsePublicKey(s string) (*PublicKey, error) {
	name, raw, err := splitKey("public key", s)
	if err != nil {
		return nil, err
	}
	if len(raw) != ed25519.PublicKeySize {
		return nil, keyErrorf("public key %q: key data is %d bytes, want %d", name, len(raw), ed25519.PublicKeySize)
	}
	return &PublicKey{Name: name, Key: ed25519.PublicKey(raw)}, nil
}

// Public returns the matching public key.
func (k *SecretKey) Public() *PublicKey {
	return &PublicKey{Name: k.Name, Key: k.Key.Public().(ed25519.PublicKey)}
}

// String hides the key material so that logging a key cannot leak it.
func (k *SecretKey) String() string { return k.Name + ":<secret>" }

// GoString hides the key material from %#v.
func (k *SecretKey) GoString() string {
	return fmt.Sprintf("&nar.SecretKey{Name:%q, Key:<secret>}", k.Name)
}

// String returns "name:base64", as `nix key convert-secret-to-public` prints.
func (k *PublicKey) String() string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Key)
}

// Sign returns "name:base64(signature)".
func (k *SecretKey) Sign(msg []byte) string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(ed25519.Sign(k.Key, msg))
}

// Verify checks a "name:base64(signature)" string. Signatures by another
// key name are not valid.
func (k *PublicKey) Verify(msg []byte, sig string) bool {
	name, data, ok := strings.Cut(sig, ":")
	if !ok || name != k.Name || len(k.Key) != ed25519.PublicKeySize {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(k.Key, msg, raw)
}

// GenerateSecretKey makes a new signing key named name (for example
// "cache.example.org-1"), as `nix key generate-secret --key-name` does.
func GenerateSecretKey(name string) (*SecretKey, error) {
	if name == "" || strings.ContainsAny(name, ": \t\n") {
		return nil, keyErrorf("key name %q: use a non-empty name without ':' or spaces, e.g. cache.example.org-1", name)
	}
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, &KeyError{Msg: "generating key: " + err.Error(), Err: err}
	}
	return &SecretKey{Name: name, Key: priv}, nil
}

// NewSecretKeyFile makes a signing key named name, as GenerateSecretKey
// does, and writes it to path, a new file readable by its owner only. It
// never replaces an existing file (clients may trust the key in it): the
// error then wraps fs.ErrExist. The file appears whole or not at all.
// A bad name is a *KeyError; nothing is written then.
func NewSecretKeyFile(path, name string) (*SecretKey, error) {
	k, err := GenerateSecretKey(name)
	if err != nil {
		return nil, err
	}
	if err := WriteSecretKeyFile(path, k); err != nil {
		return nil, err
	}
	return k, nil
}

// WriteSecretKeyFile writes k to path, a new file readable by its owner
// only, whole or not at all. It never replaces an existing file: the
// error then wraps fs.ErrExist.
func WriteSecretKeyFile(path string, k *SecretKey) error {
	return fsutil.WriteFileNew(path, []byte(k.Encode()+"\n"), 0o600)
}

// Encode returns the key as Nix writes it to a file: "name:base64(64 bytes)".
// The result is secret.
func (k *SecretKey) Encode() string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Key)
}
