package provision

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nixpushd/nixpushd/internal/fsutil"
)

// FormatCredentials is a credentials file as `push --credentials-file`
// and the NixOS module's credentialsFile read it.
func FormatCredentials(c Credentials) []byte {
	s := "AWS_ACCESS_KEY_ID=" + c.AccessKey + "\nAWS_SECRET_ACCESS_KEY=" + c.SecretKey + "\n"
	if c.SessionToken != "" {
		s += "AWS_SESSION_TOKEN=" + c.SessionToken + "\n"
	}
	return []byte(s)
}

// writeCredentialsFile writes the writer's credentials, 0600: a new file,
// or in place of the existing one when replace is set.
func writeCredentialsFile(path string, c Credentials, replace bool) error {
	if err := ensureDir(path); err != nil {
		return err
	}
	if replace {
		return fsutil.WriteFileAtomic(path, FormatCredentials(c), 0o600)
	}
	return fsutil.WriteFileNew(path, FormatCredentials(c), 0o600)
}

// ensureDir creates a missing parent directory as 0700; an existing one
// is left as it is.
func ensureDir(path string) error {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(dir, 0o700)
	}
	return nil
}

// Credentials are an S3 key pair. String never shows the secret.
type Credentials struct {
	AccessKey, SecretKey, SessionToken string
}

func (c Credentials) String() string { return c.AccessKey + ":<secret>" }

// GoString hides the secret from %#v.
func (c Credentials) GoString() string {
	return fmt.Sprintf("provision.Credentials{AccessKey:%q, SecretKey:<secret>}", c.AccessKey)
}
