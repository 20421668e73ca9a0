package main

import (
	"crypto/rand"

	"github.com/spf13/cobra"

	"github.com/trustfed/trustfed/attestation"
)

// keyFiles is what keygen wrote, for -o json.
type keyFiles struct {
	PrivateKeyFile string `json:"privateKeyFile"`
	PublicKeyFile  string `json:"publicKeyFile"`
	Fingerprint    string `json:"fingerprint"`
}

func newKeygenCmd() *cobra.Command {
	var out string
	var force bool
	cmd := &cobra.Command{
		Use:   "keygen --out FILE [--force]",
		Short: "Generate an ed25519 key pair (offline)",
		Long: `Generate an ed25519 key pair for an organisation, a passport issuer or a
member node. FILE receives the private key (PKCS#8 PEM, mode 0600) and
FILE.pub the public key (PKIX PEM). Existing files are never replaced unless
--force is given. Prints the key's fingerprint: SHA256: and the unpadded
base64 of the SHA-256 of the public key's DER encoding, as the registry and
passports ("kid") name keys. Works on local files only.`,
		Example: "  trustfed keygen --out acme.key",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageErrorf("--out is required")
			}
			pub, priv, err := attestation.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			privPEM, err := attestation.MarshalPrivateKeyPEM(priv)
			if err != nil {
				return err
			}
			pubPEM, err := attestation.MarshalPublicKeyPEM(pub)
			if err != nil {
				return err
			}
			files := keyFiles{PrivateKeyFile: out, PublicKeyFile: out + ".pub", Fingerprint: attestation.Fingerprint(pub)}
			// Checks both files before writing either; the key gets 0600.
			if err := attestation.WritePEMFiles(files.PublicKeyFile, files.PrivateKeyFile, pubPEM, privPEM, force); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return writePlainJSON(cmd.OutOrStdout(), files)
			}
			t := newTable(cmd.OutOrStdout())
			t.row("Private key:", files.PrivateKeyFile)
			t.row("Public key:", files.PublicKeyFile)
			t.row("Fingerprint:", files.Fingerprint)
			return t.flush()
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "private key file; the public key goes to FILE.pub (required)")
	cmd.Flags().BoolVar(&force, "force", false, "replace existing files")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

// jsonOutput reports whether the global --output flag asks for JSON. The
// offline commands read it from the flag because newIssuerCmd is built
// without the app.
func jsonOutput(cmd *cobra.Command) bool {
	f := cmd.Flag("output")
	return f != nil && f.Value.String() == outputJSON
}
