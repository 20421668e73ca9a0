package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/ids"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// maxPublicKeyFile bounds a public key PEM file.
const maxPublicKeyFile = 64 << 10

// issuerAdminCommands are the commands of the "issuer" group that talk to
// the registry: accredit, withdraw, list, get. They are built without the
// app (as the group is) and read the global flags from the parsed command
// line.
func issuerAdminCommands() []*cobra.Command {
	return []*cobra.Command{
		newIssuerAccreditCmd(),
		newIssuerWithdrawCmd(),
		newIssuerListCmd(),
		newIssuerGetCmd(),
	}
}

func newIssuerAccreditCmd() *cobra.Command {
	var name, pubkey, maxLevel, reason string
	cmd := &cobra.Command{
		Use:   "accredit ID --name NAME --pubkey issuer.key.pub --max-level L",
		Short: "Accredit a passport issuer up to a maximum level (an admin change)",
		Long: `Accredit a passport issuer (an assessor): passports signed with the private
half of --pubkey (PKIX PEM, e.g. FILE.pub from "trustfed keygen --out FILE")
and naming issuer ID count, up to level --max-level (0..4 or its name).

` + adminChangesLong,
		Example: `  trustfed issuer accredit eu-assessors --name "EU Assessors" --pubkey eu-assessors.key.pub --max-level 4`,
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ch, err := issuerAccreditChange(args[0], name, maxLevel)
			if err != nil {
				return err
			}
			pemText, err := readPublicKeyPEM(pubkey)
			if err != nil {
				return err
			}
			if ch.PublicKey, err = attestation.ParsePublicKeyPEM([]byte(pemText)); err != nil {
				return err
			}
			why, err := changeReason(reason, fmt.Sprintf("accredit issuer %s up to level %d", ch.IssuerId, ch.MaxLevel))
			if err != nil {
				return err
			}
			a, err := appFromFlags(cmd)
			if err != nil {
				return err
			}
			change := &trustfedv1.AdminChange{Reason: why, Change: &trustfedv1.AdminChange_AccreditIssuer{AccreditIssuer: ch}}
			return a.proposeChange(cmd, change, showIssuer(ch.IssuerId))
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "human-readable name (required)")
	cmd.Flags().StringVar(&pubkey, "pubkey", "", "the issuer's ed25519 public key, PKIX PEM (required)")
	cmd.Flags().StringVar(&maxLevel, "max-level", "", "highest level the issuer may attest, 0..4 or its name (required)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded; default: a description of the change)")
	for _, f := range []string{"name", "pubkey", "max-level"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

// showIssuer prints an issuer after a change applied to it.
func showIssuer(id string) func(ctx context.Context, c *client.Client, w io.Writer) error {
	return func(ctx context.Context, c *client.Client, w io.Writer) error {
		resp, err := c.Admin().GetIssuer(ctx, &trustfedv1.GetIssuerRequest{IssuerId: id})
		if err != nil {
			return err
		}
		return writeIssuer(w, resp.GetIssuer(), nil)
	}
}

// issuerAccreditChange validates the arguments of "issuer accredit" that
// need no file.
func issuerAccreditChange(id, name, maxLevel string) (*trustfedv1.AccreditIssuerChange, error) {
	if err := validateIssuerID(id); err != nil {
		return nil, err
	}
	if err := validateName(name); err != nil {
		return nil, err
	}
	l, err := parseLevel(maxLevel)
	if err != nil {
		return nil, usageErrorf("--max-level: %w", err)
	}
	return &trustfedv1.AccreditIssuerChange{IssuerId: id, Name: name, MaxLevel: l}, nil
}

// validateIssuerID checks an issuer id (same format as organisation ids).
func validateIssuerID(id string) error {
	if !ids.Organization.Match(id) {
		return usageErrorf("issuer id %q is not valid (%s)", id, ids.Organization)
	}
	return nil
}

// readPublicKeyPEM reads an ed25519 public key file and returns its PEM
// text, checked locally so that a wrong file (a private key, say) is refused
// before anything is sent.
func readPublicKeyPEM(path string) (string, error) {
	if path == "" {
		return "", usageErrorf("--pubkey is empty")
	}
	data, err := readBounded(path, maxPublicKeyFile, "public key")
	if err != nil {
		return "", err
	}
	if _, err := attestation.ParsePublicKeyPEM(data); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return string(data), nil
}

func newIssuerWithdrawCmd() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "withdraw ID --reason REASON",
		Short: "Withdraw an issuer's accreditation (its passports stop counting at the next decision; an admin change)",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validateIssuerID(args[0]); err != nil {
				return err
			}
			if err := validateReason(reason); err != nil {
				return err
			}
			a, err := appFromFlags(cmd)
			if err != nil {
				return err
			}
			change := &trustfedv1.AdminChange{Reason: reason, Change: &trustfedv1.AdminChange_WithdrawIssuer{WithdrawIssuer: &trustfedv1.WithdrawIssuerChange{IssuerId: args[0]}}}
			return a.proposeChange(cmd, change, showIssuer(args[0]))
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the accreditation is withdrawn (required, recorded)")
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}

func newIssuerListCmd() *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List passport issuers",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := appFromFlags(cmd)
			if err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Admin().ListIssuers(ctx, &trustfedv1.ListIssuersRequest{Consistency: readConsistency(stale)})
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeIssuers(w, resp.GetIssuers()) })
			})
		},
	}
	addStaleFlag(cmd, &stale)
	return cmd
}

func newIssuerGetCmd() *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Show a passport issuer",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validateIssuerID(args[0]); err != nil {
				return err
			}
			a, err := appFromFlags(cmd)
			if err != nil {
				return err
			}
			req := &trustfedv1.GetIssuerRequest{IssuerId: args[0], Consistency: readConsistency(stale)}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Admin().GetIssuer(ctx, req)
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeIssuer(w, resp.GetIssuer(), resp.GetMeta()) })
			})
		},
	}
	addStaleFlag(cmd, &stale)
	return cmd
}

func formatIssuerStatus(s trustfedv1.IssuerStatus) string {
	return formatEnum(s.String(), "ISSUER_STATUS_")
}

// writeIssuer prints one issuer as key-value rows.
func writeIssuer(w io.Writer, is *trustfedv1.Issuer, m *trustfedv1.ReadMeta) error {
	t := newTable(w)
	t.row("ID:", is.GetId())
	t.row("Name:", is.GetName())
	t.row("Status:", formatIssuerStatus(is.GetStatus()))
	t.row("Max level:", formatLevel(is.GetMaxLevel()))
	t.row("Key fingerprint:", orDash(is.GetPublicKeyFingerprint()))
	t.row("Accredited:", formatTime(is.GetAccreditTime()))
	if is.GetWithdrawTime() != nil || is.GetStatus() == trustfedv1.IssuerStatus_ISSUER_STATUS_WITHDRAWN {
		t.row("Withdrawn:", formatTime(is.GetWithdrawTime()))
		t.row("Withdraw reason:", orDash(is.GetWithdrawReason()))
	}
	t.row("Create index:", fmt.Sprint(is.GetCreateIndex()))
	t.row("Modify index:", fmt.Sprint(is.GetModifyIndex()))
	writeMetaRows(t, m)
	return t.flush()
}

// writeIssuers prints issuers as a table.
func writeIssuers(w io.Writer, issuers []*trustfedv1.Issuer) error {
	t := newTable(w)
	t.row("ID", "NAME", "MAX LEVEL", "STATUS", "KEY FINGERPRINT", "ACCREDITED")
	for _, is := range issuers {
		t.row(is.GetId(), is.GetName(), formatLevel(is.GetMaxLevel()), formatIssuerStatus(is.GetStatus()),
			orDash(is.GetPublicKeyFingerprint()), formatTime(is.GetAccreditTime()))
	}
	return t.flush()
}
