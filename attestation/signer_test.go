package attestation

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
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

// TestFileKeyringPicksUpANextKey: the keyring holds the primary key and
// finds a rotation's next key written into the directory while it runs;
// a key it does not hold is not found.
func TestFileKeyringPicksUpANextKey(t *testing.T) {
	dir := t.TempDir()
	ring, created, err := OpenFileKeyring(dir)
	if err != nil || !created {
		t.Fatalf("created=%v err=%v", created, err)
	}
	primary := Fingerprint(ring.Primary().Public())
	if _, ok := ring.Lookup(primary); !ok {
		t.Fatal("the primary key is not found")
	}
	pub, priv, err := GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := SavePrivateKey(filepath.Join(dir, "node-signing-next.key"), priv); err != nil {
		t.Fatal(err)
	}
	next := Fingerprint(pub)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s, ok := ring.Lookup(next); ok {
			if !s.Public().Equal(pub) {
				t.Fatal("the next key's signer has another public key")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the next key written into the directory was never found")
		}
		<-time.After(10 * time.Millisecond) // poll the condition until the deadline
	}
	if _, ok := ring.Lookup("SHA256:not-held"); ok {
		t.Fatal("a key the node does not hold was found")
	}
	reopened, created, err := OpenFileKeyring(dir)
	if err != nil || created {
		t.Fatalf("reopen: created=%v err=%v", created, err)
	}
	if Fingerprint(reopened.Primary().Public()) != primary {
		t.Fatal("reopening changed the primary key")
	}
	if _, ok := reopened.Lookup(next); !ok {
		t.Fatal("reopening lost the next key")
	}
}
