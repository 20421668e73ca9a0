package attestation

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLoadOrCreateFileSignerGeneratesOnceWith0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), NodeKeyFile)
	s1, created, err := LoadOrCreateFileSigner(path)
	if err != nil || !created {
		t.Fatalf("first start: created=%v err=%v, want a new key", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("key file mode %v, want 0600", perm)
	}
	s2, created, err := LoadOrCreateFileSigner(path)
	if err != nil || created {
		t.Fatalf("restart: created=%v err=%v, want the same key loaded", created, err)
	}
	if !s1.Public().Equal(s2.Public()) {
		t.Fatal("restart loaded a different key")
	}
	sig, err := s2.Sign(context.Background(), PurposeDecision, []byte("statement"))
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(s1.Public(), PurposeDecision, []byte("statement"), sig); err != nil {
		t.Fatalf("signature by the reloaded key does not verify: %v", err)
	}
	if err := Verify(s1.Public(), PurposeWebhook, []byte("statement"), sig); err == nil {
		t.Fatal("a decision signature verified for another purpose")
	}
}

func TestLoadOrCreateFileSignerRefusesUnsafeOrBrokenFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, NodeKeyFile)
	if _, _, err := LoadOrCreateFileSigner(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateFileSigner(path); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("world-readable key: err=%v, want ErrInvalidKey", err)
	}
	broken := filepath.Join(dir, "broken.key")
	if err := os.WriteFile(broken, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, created, err := LoadOrCreateFileSigner(broken); err == nil || created {
		t.Fatalf("unparseable key: created=%v err=%v, want an error and no new key", created, err)
	}
	if data, _ := os.ReadFile(broken); string(data) != "not pem" {
		t.Fatal("an unparseable key file was replaced")
	}
}

func TestFileSignerHonoursContextAndPurpose(t *testing.T) {
	_, priv, err := GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewFileSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Sign(ctx, PurposeDecision, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: err=%v", err)
	}
	if _, err := s.Sign(context.Background(), Purpose("Bad/Purpose"), nil); !errors.Is(err, ErrSignature) {
		t.Fatalf("invalid purpose: err=%v, want ErrSignature (no panic)", err)
	}
	if _, err := NewFileSigner(priv[:10]); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("short key: err=%v", err)
	}
}
