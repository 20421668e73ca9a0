package evidence

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
)

// spoolMemory is how much of a file a spool keeps in memory before it
// moves it to a temporary file.
const spoolMemory = 8 << 20

// spool collects one archive member (the tar format needs its size before
// its content) and hashes it on the way.
type spool struct {
	buf  bytes.Buffer
	f    *os.File
	n    int64
	hash hash.Hash
	err  error
}

func newSpool() *spool { return &spool{hash: sha256.New()} }

func (s *spool) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	s.hash.Write(p)
	s.n += int64(len(p))
	if s.f == nil && s.buf.Len()+len(p) <= spoolMemory {
		return s.buf.Write(p)
	}
	if s.f == nil {
		f, err := os.CreateTemp("", "trustfed-evidence-*")
		if err != nil {
			s.err = fmt.Errorf("spool: %w", err)
			return 0, s.err
		}
		s.f = f
		if _, err := s.f.Write(s.buf.Bytes()); err != nil {
			s.err = fmt.Errorf("spool: %w", err)
			return 0, s.err
		}
		s.buf = bytes.Buffer{}
	}
	if _, err := s.f.Write(p); err != nil {
		s.err = fmt.Errorf("spool: %w", err)
		return 0, s.err
	}
	return len(p), nil
}

func (s *spool) digest() FileDigest {
	return FileDigest{Size: s.n, SHA256: hex.EncodeToString(s.hash.Sum(nil))}
}

// reader returns the collected bytes from the start.
func (s *spool) reader() (io.Reader, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.f == nil {
		return bytes.NewReader(s.buf.Bytes()), nil
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return s.f, nil
}

// close removes the temporary file, if any.
func (s *spool) close() error {
	if s.f == nil {
		return nil
	}
	name := s.f.Name()
	return errors.Join(s.f.Close(), os.Remove(name))
}

// hashSink hashes what a file would hold, without keeping it (Verify).
type hashSink struct {
	n    int64
	hash hash.Hash
}

func newHashSink() *hashSink { return &hashSink{hash: sha256.New()} }

func (h *hashSink) Write(p []byte) (int, error) {
	h.n += int64(len(p))
	return h.hash.Write(p)
}

func (h *hashSink) digest() FileDigest {
	return FileDigest{Size: h.n, SHA256: hex.EncodeToString(h.hash.Sum(nil))}
}
