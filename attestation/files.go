package attestation

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Permissions of the files this package writes.
const (
	certFileMode fs.FileMode = 0o644
	keyFileMode  fs.FileMode = 0o600
)

// WriteFile writes data to path with perm. Without overwrite it fails with
// ErrFileExists if path exists; with overwrite it replaces path atomically
// (temporary file in the same directory, then rename).
func WriteFile(path string, data []byte, perm fs.FileMode, overwrite bool) error {
	if !overwrite {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("write %s: %w", path, ErrFileExists)
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		if err := writeSyncClose(f, data); err != nil {
			_ = os.Remove(path)
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmpName := tmp.Name()
	if err := tmp.Chmod(perm); err != nil {
		_ = tmp.Close()
		_ = os.Remove(tmpName)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := writeSyncClose(tmp, data); err != nil {
		_ = os.Remove(tmpName)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		_ = os.Remove(tmpName)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func writeSyncClose(f *os.File, data []byte) error {
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// WritePEMFiles writes a certificate (mode 0644) and its private key (mode
// 0600), as returned by IssueNode. Unless overwrite is set it refuses, with
// ErrFileExists, to replace either file, and checks both before writing any.
func WritePEMFiles(certPath, keyPath string, certPEM, keyPEM []byte, overwrite bool) error {
	if certPath == "" || keyPath == "" {
		return errors.New("write pem files: certificate and key paths are required")
	}
	if certPath == keyPath {
		return errors.New("write pem files: certificate and key paths must differ")
	}
	if !overwrite {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("write %s: %w", p, ErrFileExists)
			}
		}
	}
	if err := WriteFile(keyPath, keyPEM, keyFileMode, overwrite); err != nil {
		return err
	}
	return WriteFile(certPath, certPEM, certFileMode, overwrite)
}

func fileExists(path string) (bool, error) {
	_, err := os.Stat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, fmt.Errorf("stat %s: %w", path, err)
}
