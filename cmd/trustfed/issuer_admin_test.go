package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestIssuerAccreditChange(t *testing.T) {
	req, err := issuerAccreditChange("eu-assessors", "EU Assessors", "privileged")
	require.NoError(t, err)
	require.Equal(t, "eu-assessors", req.GetIssuerId())
	require.Equal(t, "EU Assessors", req.GetName())
	require.Equal(t, uint32(4), req.GetMaxLevel())
	for _, args := range [][3]string{{"EU", "EU Assessors", "4"}, {"eu-assessors", "", "4"}, {"eu-assessors", "EU", "9"}, {"eu-assessors", "EU", ""}} {
		_, err := issuerAccreditChange(args[0], args[1], args[2])
		requireUsageError(t, err)
	}
}

func TestReadPublicKeyPEM(t *testing.T) {
	dir := t.TempDir()
	_, path := testKey(t, dir, "issuer.key")
	want, err := os.ReadFile(path + ".pub")
	require.NoError(t, err)
	got, err := readPublicKeyPEM(path + ".pub")
	require.NoError(t, err)
	require.Equal(t, string(want), got)

	_, err = readPublicKeyPEM(path)
	require.Error(t, err, "a private key is refused before anything is sent")
	_, err = readPublicKeyPEM(filepath.Join(dir, "missing.pub"))
	require.Error(t, err)
	_, err = readPublicKeyPEM("")
	requireUsageError(t, err)
}
