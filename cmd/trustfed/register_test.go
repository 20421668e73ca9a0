package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// testKey writes a fresh ed25519 key to dir/name (and its public half to
// name.pub) and returns the key and the private key's path.
func testKey(t *testing.T, dir, name string) (ed25519.PrivateKey, string) {
	t.Helper()
	_, priv, err := attestation.GenerateKey(rand.Reader)
	require.NoError(t, err)
	path := filepath.Join(dir, name)
	require.NoError(t, attestation.SavePrivateKey(path, priv))
	pubPEM, err := attestation.MarshalPublicKeyPEM(priv.Public().(ed25519.PublicKey))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path+".pub", pubPEM, 0o644))
	return priv, path
}

func validRegisterOptions() registerOptions {
	return registerOptions{id: "acme-bank", name: "Acme Bank", jurisdiction: "EU", level: "trusted",
		endpoints: []string{"https://acme.example/notify"}}
}

func TestRegisterOptions(t *testing.T) {
	o := validRegisterOptions()
	reg, err := o.registration()
	require.NoError(t, err)
	require.Equal(t, "acme-bank", reg.GetOrganizationId())
	require.Equal(t, uint32(3), reg.GetDeclaredLevel())
	require.Equal(t, []string{"https://acme.example/notify"}, reg.GetNotificationEndpoints())
	require.True(t, proto.Equal(defaultControlProfile(), reg.GetControlProfile()))

	tests := []struct {
		name string
		edit func(*registerOptions)
	}{
		{"bad id", func(o *registerOptions) { o.id = "Acme" }},
		{"empty name", func(o *registerOptions) { o.name = "" }},
		{"long name", func(o *registerOptions) { o.name = strings.Repeat("x", 201) }},
		{"control character in name", func(o *registerOptions) { o.name = "Acme\nBank" }},
		{"bad jurisdiction", func(o *registerOptions) { o.jurisdiction = "E U" }},
		{"empty jurisdiction", func(o *registerOptions) { o.jurisdiction = "" }},
		{"bad level", func(o *registerOptions) { o.level = "5" }},
		{"http endpoint", func(o *registerOptions) { o.endpoints = []string{"http://acme.example"} }},
		{"relative endpoint", func(o *registerOptions) { o.endpoints = []string{"/notify"} }},
		{"too many endpoints", func(o *registerOptions) { o.endpoints = make([]string, 17) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := validRegisterOptions()
			tt.edit(&o)
			_, err := o.registration()
			requireUsageError(t, err)
		})
	}
}

func TestDefaultControlProfile(t *testing.T) {
	cp := defaultControlProfile()
	rules := cp.GetDataHandling().GetPiiRules()
	require.Len(t, rules, len(trustfedv1.PiiType_name)-1, "every PII type but UNSPECIFIED")
	seen := map[trustfedv1.PiiType]bool{}
	redact, pass := trustfedv1.PiiAction_PII_ACTION_REDACT, trustfedv1.PiiAction_PII_ACTION_PASS
	for _, r := range rules {
		require.NotEqual(t, trustfedv1.PiiType_PII_TYPE_UNSPECIFIED, r.GetType())
		require.False(t, seen[r.GetType()], "%v twice", r.GetType())
		seen[r.GetType()] = true
		require.Equal(t, []trustfedv1.PiiAction{redact, redact, redact, pass, pass}, r.GetByLevel())
	}
	require.Equal(t, uint32(30), cp.GetDataHandling().GetRetentionDays())
	require.Equal(t, trustfedv1.LogDetail_LOG_DETAIL_SUMMARY, cp.GetLogging().GetDetail())
	require.Equal(t, uint32(7), cp.GetLogging().GetAuditRetentionYears())
	require.NotSame(t, defaultControlProfile(), cp, "a fresh profile each time")
}

func TestSignRegistration(t *testing.T) {
	key, _ := testKey(t, t.TempDir(), "acme.key")
	o := validRegisterOptions()
	reg, err := o.registration()
	require.NoError(t, err)
	reg.Passport = "header.payload.signature"

	req, err := signRegistration(reg, key, rand.Reader)
	require.NoError(t, err)
	require.Len(t, req.GetRequestId(), 32)
	require.Empty(t, reg.GetPublicKey(), "the input is not modified")

	var got trustfedv1.Registration
	require.NoError(t, proto.Unmarshal(req.GetRegistration(), &got))
	pub := key.Public().(ed25519.PublicKey)
	require.Equal(t, []byte(pub), got.GetPublicKey())
	require.Len(t, got.GetNonce(), 32)
	require.Equal(t, "header.payload.signature", got.GetPassport())
	require.Equal(t, "Acme Bank", got.GetName())

	require.NoError(t, attestation.Verify(pub, attestation.PurposeRegistration, req.GetRegistration(), req.GetSignature()))
	// Bound to the purpose and to the exact bytes.
	require.ErrorIs(t, attestation.Verify(pub, attestation.PurposeAgreement, req.GetRegistration(), req.GetSignature()), attestation.ErrSignature)
	tampered := bytes.Clone(req.GetRegistration())
	tampered[len(tampered)-1] ^= 1
	require.ErrorIs(t, attestation.Verify(pub, attestation.PurposeRegistration, tampered, req.GetSignature()), attestation.ErrSignature)

	// A new registration gets a new nonce (so a new signature).
	req2, err := signRegistration(reg, key, rand.Reader)
	require.NoError(t, err)
	require.NotEqual(t, req.GetRegistration(), req2.GetRegistration())
	require.NotEqual(t, req.GetRequestId(), req2.GetRequestId())

	_, err = signRegistration(reg, key, bytes.NewReader(nil))
	require.Error(t, err, "no randomness, no registration")
}

func TestReadControlProfile(t *testing.T) {
	dir := t.TempDir()
	want := defaultControlProfile()
	want.DataHandling.ResidencyRegions = []string{"EU"}
	data, err := protojson.Marshal(want)
	require.NoError(t, err)
	path := filepath.Join(dir, "profile.json")
	require.NoError(t, os.WriteFile(path, data, 0o644))
	got, err := readControlProfile(path)
	require.NoError(t, err)
	require.True(t, proto.Equal(want, got))

	require.NoError(t, os.WriteFile(path, []byte(`{"logging":{"detail":"LOG_DETAIL_FULL"},"colour":"red"}`), 0o644))
	_, err = readControlProfile(path)
	require.ErrorContains(t, err, "colour", "unknown fields are refused")

	_, err = readControlProfile(filepath.Join(dir, "missing.json"))
	require.Error(t, err)
}

func TestReadPassportToken(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.jwt")
	require.NoError(t, os.WriteFile(path, []byte("  a.b.c\n"), 0o644))
	tok, err := readPassportToken(path)
	require.NoError(t, err)
	require.Equal(t, "a.b.c", tok)

	require.NoError(t, os.WriteFile(path, []byte("\n"), 0o644))
	_, err = readPassportToken(path)
	require.ErrorContains(t, err, "empty")

	require.NoError(t, os.WriteFile(path, bytes.Repeat([]byte("a"), attestation.MaxPassportSize+1), 0o644))
	_, err = readPassportToken(path)
	require.ErrorContains(t, err, "over")

	_, err = readPassportToken(filepath.Join(dir, "missing"))
	require.Error(t, err)
}

func TestPassportSubmission(t *testing.T) {
	key, _ := testKey(t, t.TempDir(), "acme.key")
	req := passportSubmission("acme-bank", "a.b.c", key)
	require.Equal(t, "acme-bank", req.GetOrganizationId())
	require.Equal(t, "a.b.c", req.GetPassport())
	pub := key.Public().(ed25519.PublicKey)
	require.NoError(t, attestation.Verify(pub, attestation.PurposePassport, []byte("a.b.c"), req.GetSignature()))
	require.Error(t, attestation.Verify(pub, attestation.PurposeRegistration, []byte("a.b.c"), req.GetSignature()))
}

func TestLoadOrgKey(t *testing.T) {
	dir := t.TempDir()
	key, path := testKey(t, dir, "acme.key")
	got, err := loadOrgKey(path)
	require.NoError(t, err)
	require.True(t, key.Equal(got))
	_, err = loadOrgKey("")
	requireUsageError(t, err)
	_, err = loadOrgKey(path + ".pub")
	require.Error(t, err, "a public key is not a private key")
	var ue usageError
	require.False(t, errors.As(err, &ue), "a bad key file is a runtime error")
}
