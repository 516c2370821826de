package provision

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

func writeCredentialsFile(path string, c Credentials, replace bool) error {
	if replace {
		return replaceSecretFile(path, FormatCredentials(c))
	}
	return createSecretFile(path, FormatCredentials(c))
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

// createSecretFile writes a new 0600 file; it fails if path exists, so an
// existing secret is never overwritten. A failed write leaves no file.
func createSecretFile(path string, data []byte) (err error) {
	if err := ensureDir(path); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	// The umask cannot widen 0600, but a stricter one must not make the
	// file unreadable to its owner either.
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Sync()
}

// replaceSecretFile atomically replaces path with a 0600 file holding
// data.
func replaceSecretFile(path string, data []byte) error {
	if err := ensureDir(path); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".new-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
