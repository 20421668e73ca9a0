package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/ids"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Limits of registration arguments (registry/state checks the same).
const (
	maxNameRunes     = 200
	maxEndpoints     = 16
	maxEndpointLen   = 2048
	maxProfileFile   = 1 << 20
	nonceBytes       = 16
	maxPassportToken = attestation.MaxPassportSize
)

// registerOptions are the flags of "org register".
type registerOptions struct {
	id           string
	name         string
	jurisdiction string
	level        string
	keyFile      string
	passportFile string
	endpoints    []string
	profileFile  string
}

const orgRegisterLong = `Register an organisation. The command builds a registration (id, name,
jurisdiction, declared level, the public key of --org-key, the control profile,
notification endpoints, the passport and a random nonce), signs it with the
organisation's private key (--org-key, e.g. from "trustfed keygen") and submits
it. The registry checks the signature and the passport (issued for this
organisation and key by an accredited issuer, at or above the declared
level) and keeps the organisation PENDING until an admin approves it
("trustfed org approve").

--profile reads a ControlProfile in protobuf JSON. Without it the profile is
permissive: every PII type REDACT at levels 0-2 and PASS at 3-4, personal
data retained 30 days, SUMMARY logging, audit records kept 7 years.`

func newOrgRegisterCmd(a *app) *cobra.Command {
	var o registerOptions
	cmd := &cobra.Command{
		Use:     "register --id ID --name NAME --jurisdiction J --level N --org-key org.key --passport passport.jwt",
		Short:   "Register an organisation with a signed registration and its passport (PENDING until approved)",
		Long:    orgRegisterLong,
		Example: `  trustfed org register --id acme-bank --name "Acme Bank" --jurisdiction EU --level 3 --org-key acme-bank.key --passport acme-bank.jwt`,
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			reg, err := o.registration()
			if err != nil {
				return err
			}
			key, err := loadOrgKey(o.keyFile)
			if err != nil {
				return err
			}
			if reg.Passport, err = readPassportToken(o.passportFile); err != nil {
				return err
			}
			if o.profileFile != "" {
				if reg.ControlProfile, err = readControlProfile(o.profileFile); err != nil {
					return err
				}
			}
			req, err := signRegistration(reg, key, rand.Reader)
			if err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := call(ctx, c.Membership().RegisterOrganization, req)
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeOrganization(w, resp.GetOrganization(), nil) })
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.id, "id", "", "organisation id, "+ids.Organization.String()+" (required)")
	f.StringVar(&o.name, "name", "", "human-readable, unique name (required)")
	f.StringVar(&o.jurisdiction, "jurisdiction", "", `jurisdiction code, e.g. "EU" or "US-NY" (required)`)
	f.StringVar(&o.level, "level", "", "declared trust level, 0..4 or its name; at most what the passport attests (required)")
	f.StringVar(&o.keyFile, "org-key", "", "the organisation's ed25519 private key, PKCS#8 PEM (required)")
	f.StringVar(&o.keyFile, "key", "", "")
	_ = f.MarkDeprecated("key", "use --org-key")
	f.StringVar(&o.passportFile, "passport", "", "the governance passport (compact JWS) issued for this organisation (required)")
	f.StringArrayVar(&o.endpoints, "endpoint", nil, "https URL that receives the registry's notifications (repeatable)")
	f.StringVar(&o.profileFile, "profile", "", "control profile, a trustfed.v1.ControlProfile in protobuf JSON (default: permissive)")
	cmd.MarkFlagsOneRequired("org-key", "key")
	for _, name := range []string{"id", "name", "jurisdiction", "level", "passport"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

// registration validates the flags that need no file and returns the
// registration with the default control profile (no key, passport or nonce yet).
func (o *registerOptions) registration() (*trustfedv1.Registration, error) {
	if err := validateOrgID("--id", o.id); err != nil {
		return nil, err
	}
	if err := validateName(o.name); err != nil {
		return nil, err
	}
	if !ids.Jurisdiction.Match(o.jurisdiction) {
		return nil, usageErrorf("--jurisdiction %q is not a jurisdiction code (1..64 of A-Z a-z 0-9 -)", o.jurisdiction)
	}
	level, err := parseLevel(o.level)
	if err != nil {
		return nil, err
	}
	if err := validateEndpoints(o.endpoints); err != nil {
		return nil, err
	}
	return &trustfedv1.Registration{
		OrganizationId:        o.id,
		Name:                  o.name,
		Jurisdiction:          o.jurisdiction,
		DeclaredLevel:         level,
		ControlProfile:        defaultControlProfile(),
		NotificationEndpoints: o.endpoints,
	}, nil
}

// validateName checks an organisation or issuer name: 1..200 printable characters.
func validateName(name string) error {
	if name == "" || !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxNameRunes {
		return usageErrorf("--name must be 1..%d characters of valid UTF-8", maxNameRunes)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return usageErrorf("--name contains a non-printable character")
		}
	}
	return nil
}

// validateEndpoints checks --endpoint values: absolute https URLs.
func validateEndpoints(eps []string) error {
	if len(eps) > maxEndpoints {
		return usageErrorf("at most %d --endpoint values", maxEndpoints)
	}
	for _, e := range eps {
		u, err := url.Parse(e)
		if err != nil || u.Scheme != "https" || u.Host == "" || len(e) > maxEndpointLen {
			return usageErrorf("--endpoint %q is not an absolute https URL", e)
		}
	}
	return nil
}

// defaultControlProfile is the profile "org register" sends without
// --profile: every PII type REDACT at levels 0-2 and PASS at 3-4, 30 days
// of retention, SUMMARY logging, 7 years of audit retention.
func defaultControlProfile() *trustfedv1.ControlProfile {
	redact, pass := trustfedv1.PiiAction_PII_ACTION_REDACT, trustfedv1.PiiAction_PII_ACTION_PASS
	var rules []*trustfedv1.PiiRule
	for t := trustfedv1.PiiType(1); ; t++ {
		if _, ok := trustfedv1.PiiType_name[int32(t)]; !ok {
			break
		}
		rules = append(rules, &trustfedv1.PiiRule{Type: t, ByLevel: []trustfedv1.PiiAction{redact, redact, redact, pass, pass}})
	}
	return &trustfedv1.ControlProfile{
		DataHandling: &trustfedv1.DataHandling{PiiRules: rules, RetentionDays: 30},
		Logging:      &trustfedv1.Logging{Detail: trustfedv1.LogDetail_LOG_DETAIL_SUMMARY, AuditRetentionYears: 7},
	}
}

// readControlProfile reads a ControlProfile in protobuf JSON; unknown fields
// are an error.
func readControlProfile(path string) (*trustfedv1.ControlProfile, error) {
	data, err := readBounded(path, maxProfileFile, "control profile")
	if err != nil {
		return nil, err
	}
	var cp trustfedv1.ControlProfile
	if err := protojson.Unmarshal(data, &cp); err != nil {
		return nil, fmt.Errorf("control profile %s: %w", path, err)
	}
	return &cp, nil
}

// readPassportToken reads a passport (compact JWS) from a file, without
// surrounding white space.
func readPassportToken(path string) (string, error) {
	data, err := readBounded(path, maxPassportToken+1024, "passport")
	if err != nil {
		return "", err
	}
	tok := string(bytes.TrimSpace(data))
	if tok == "" {
		return "", fmt.Errorf("passport %s is empty", path)
	}
	if len(tok) > maxPassportToken {
		return "", fmt.Errorf("passport %s is over %d bytes", path, maxPassportToken)
	}
	return tok, nil
}

// readBounded reads a file of at most limit bytes.
func readBounded(path string, limit int64, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", what, path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("read %s %s: file is over %d bytes", what, path, limit)
	}
	return data, nil
}

// loadOrgKey reads an organisation's ed25519 private key (--org-key).
func loadOrgKey(path string) (ed25519.PrivateKey, error) {
	if path == "" {
		return nil, usageErrorf("--org-key is empty")
	}
	key, err := attestation.LoadPrivateKey(path)
	if err != nil {
		return nil, err
	}
	return key, nil
}

// signRegistration completes reg with the key's public half and a random
// nonce, serializes it once and signs those bytes for PurposeRegistration.
// The request is built once, so a retry sends the same bytes and request_id.
func signRegistration(reg *trustfedv1.Registration, key ed25519.PrivateKey, random io.Reader) (*trustfedv1.RegisterOrganizationRequest, error) {
	var nonce [nonceBytes]byte
	if _, err := io.ReadFull(random, nonce[:]); err != nil {
		return nil, fmt.Errorf("registration nonce: %w", err)
	}
	reg = proto.CloneOf(reg)
	reg.PublicKey = append([]byte(nil), key.Public().(ed25519.PublicKey)...)
	reg.Nonce = hex.EncodeToString(nonce[:])
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(reg)
	if err != nil {
		return nil, fmt.Errorf("encode registration: %w", err)
	}
	return &trustfedv1.RegisterOrganizationRequest{
		Registration: b,
		Signature:    attestation.Sign(key, attestation.PurposeRegistration, b),
		RequestId:    client.NewRequestID(),
	}, nil
}

func newOrgPassportCmd(a *app) *cobra.Command {
	var keyFile, passportFile string
	cmd := &cobra.Command{
		Use:   "passport ID --org-key org.key --passport new.jwt",
		Short: "Submit a new passport for an organisation (renewal), signed with its key",
		Long: `Replace an organisation's governance passport, e.g. before the current one
expires or to attest a new level. The submission is signed with the
organisation's private key; the old passport's serial stays in its history.`,
		Example: "  trustfed org passport acme-bank --org-key acme-bank.key --passport acme-bank-2027.jwt",
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validateOrgID("organisation id", args[0]); err != nil {
				return err
			}
			key, err := loadOrgKey(keyFile)
			if err != nil {
				return err
			}
			tok, err := readPassportToken(passportFile)
			if err != nil {
				return err
			}
			req := passportSubmission(args[0], tok, key)
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := call(ctx, c.Membership().SubmitPassport, req)
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeOrganization(w, resp.GetOrganization(), nil) })
			})
		},
	}
	cmd.Flags().StringVar(&keyFile, "org-key", "", "the organisation's ed25519 private key (required)")
	cmd.Flags().StringVar(&keyFile, "key", "", "")
	_ = cmd.Flags().MarkDeprecated("key", "use --org-key")
	cmd.Flags().StringVar(&passportFile, "passport", "", "the new passport (compact JWS) (required)")
	cmd.MarkFlagsOneRequired("org-key", "key")
	_ = cmd.MarkFlagRequired("passport")
	return cmd
}

// passportSubmission signs a passport token's bytes for PurposePassport.
func passportSubmission(orgID, token string, key ed25519.PrivateKey) *trustfedv1.SubmitPassportRequest {
	return &trustfedv1.SubmitPassportRequest{
		OrganizationId: orgID,
		Passport:       token,
		Signature:      attestation.Sign(key, attestation.PurposePassport, []byte(token)),
		RequestId:      client.NewRequestID(),
	}
}
