package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/ids"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// validateAgreementID checks an agreement id given on the command line.
func validateAgreementID(id string) error {
	if !ids.Agreement.Match(id) {
		return usageErrorf("agreement id %q is not valid (agr- and 16 hex digits)", id)
	}
	return nil
}

func newAgreementCmd(a *app) *cobra.Command {
	cmd := newGroupCmd("agreement", "Propose, sign, terminate and read bilateral agreements")
	cmd.Aliases = []string{"agreements", "agr"}
	cmd.AddCommand(
		newAgreementProposeCmd(a),
		newAgreementSignCmd(a),
		newAgreementTerminateCmd(a),
		newAgreementListCmd(a),
		newAgreementGetCmd(a),
	)
	return cmd
}

// proposeOptions are the flags of "agreement propose".
type proposeOptions struct {
	actions          []string
	dataCategories   []string
	notBefore        string
	notAfter         string
	valid            string
	minLevel         string
	noPassportExpiry bool
}

const agreementProposeLong = `Propose a bilateral agreement between organisations ORG_A and ORG_B (both
ACTIVE). The registry records the terms (PENDING) and returns the agreement
with its id; each party then signs the terms ("trustfed agreement sign"),
and the agreement is ACTIVE once both have.

The terms: the actions it allows (--actions), the data categories that may be
exchanged (--data-categories), the validity window (--not-before, default now,
to --not-after, or --valid after --not-before: a Go duration or a number of
days such as 365d) and the termination conditions: a party revoked or
suspended (always), a party's passport expiring or no longer counting (unless
--no-passport-expiry), a party's level below --min-level (if set), the end
date, and termination by either party.`

func newAgreementProposeCmd(a *app) *cobra.Command {
	var o proposeOptions
	cmd := &cobra.Command{
		Use:     "propose ORG_A ORG_B --actions A,B (--not-after TIME | --valid DURATION)",
		Short:   "Propose a bilateral agreement (PENDING until both parties sign)",
		Long:    agreementProposeLong,
		Example: "  trustfed agreement propose acme-bank st-mary --actions task_send,ping --data-categories payments --valid 365d --min-level 2",
		Args:    exactArgs("ORG_A", "ORG_B"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := o.request(args[0], args[1], time.Now())
			if err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := call(ctx, c.Membership().ProposeAgreement, req)
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeAgreement(w, resp.GetAgreement(), nil) })
			})
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.actions, "actions", nil, "actions the agreement allows, comma-separated, e.g. task_send,ping (required)")
	f.StringSliceVar(&o.dataCategories, "data-categories", nil, "data categories that may be exchanged, comma-separated, e.g. payments")
	f.StringVar(&o.notBefore, "not-before", "", "start of validity, RFC 3339 (default: now, to the second)")
	f.StringVar(&o.notAfter, "not-after", "", "end date, RFC 3339, e.g. 2027-12-31T00:00:00Z")
	f.StringVar(&o.valid, "valid", "", "end date as a period after --not-before, e.g. 365d or 8760h")
	f.StringVar(&o.minLevel, "min-level", "0", "the agreement ends if a party's level drops below this (0 = no such condition)")
	f.BoolVar(&o.noPassportExpiry, "no-passport-expiry", false, "do not end the agreement when a party's passport expires or stops counting")
	_ = cmd.MarkFlagRequired("actions")
	cmd.MarkFlagsMutuallyExclusive("not-after", "valid")
	cmd.MarkFlagsOneRequired("not-after", "valid")
	return cmd
}

// request validates the arguments of "agreement propose" and builds the
// request at now. not_before is always set (now, to the second, by
// default), so that a retry proposes exactly the same terms.
func (o *proposeOptions) request(orgA, orgB string, now time.Time) (*trustfedv1.ProposeAgreementRequest, error) {
	if err := validateOrgID("ORG_A", orgA); err != nil {
		return nil, err
	}
	if err := validateOrgID("ORG_B", orgB); err != nil {
		return nil, err
	}
	if orgA == orgB {
		return nil, usageErrorf("an agreement needs two different organisations")
	}
	if len(o.actions) == 0 {
		return nil, usageErrorf("--actions must name at least one action")
	}
	for _, list := range []struct {
		flag   string
		values []string
	}{{"--actions", o.actions}, {"--data-categories", o.dataCategories}} {
		for _, v := range list.values {
			if strings.TrimSpace(v) == "" {
				return nil, usageErrorf("%s contains an empty value", list.flag)
			}
		}
	}
	notBefore := now.UTC().Truncate(time.Second)
	if o.notBefore != "" {
		t, err := time.Parse(time.RFC3339, o.notBefore)
		if err != nil {
			return nil, usageErrorf("--not-before %q is not an RFC 3339 time such as 2026-01-01T00:00:00Z", o.notBefore)
		}
		notBefore = t.UTC()
	}
	var notAfter time.Time
	switch {
	case o.notAfter != "" && o.valid != "":
		return nil, usageErrorf("--not-after and --valid are mutually exclusive")
	case o.notAfter != "":
		t, err := time.Parse(time.RFC3339, o.notAfter)
		if err != nil {
			return nil, usageErrorf("--not-after %q is not an RFC 3339 time such as 2027-12-31T00:00:00Z", o.notAfter)
		}
		notAfter = t.UTC()
	case o.valid != "":
		d, err := parseDays("--valid", o.valid)
		if err != nil {
			return nil, err
		}
		notAfter = notBefore.Add(d)
	default:
		return nil, usageErrorf("give the end date: --not-after or --valid")
	}
	if !notAfter.After(notBefore) {
		return nil, usageErrorf("the end date %s is not after the start %s", notAfter.Format(time.RFC3339), notBefore.Format(time.RFC3339))
	}
	minLevel, err := parseLevel(o.minLevel)
	if err != nil {
		return nil, usageErrorf("--min-level: %w", err)
	}
	return &trustfedv1.ProposeAgreementRequest{
		OrganizationAId: orgA,
		OrganizationBId: orgB,
		Scope:           &trustfedv1.AgreementScope{AllowedActions: o.actions, DataCategories: o.dataCategories},
		NotBefore:       timestamppb.New(notBefore),
		NotAfter:        timestamppb.New(notAfter),
		Termination: &trustfedv1.TerminationConditions{
			OnPartyRevokedOrSuspended: true,
			MinLevel:                  minLevel,
			OnPassportExpiry:          !o.noPassportExpiry,
		},
		RequestId: client.NewRequestID(),
	}, nil
}

const agreementSignLong = `Sign an agreement's terms on behalf of one of its parties. The command reads
the agreement, parses the exact bytes of its terms and prints a one-line
summary of them (on stderr), then signs those bytes with the party's private
key (--org-key) and submits the signature. The agreement becomes ACTIVE once
both parties have signed.`

func newAgreementSignCmd(a *app) *cobra.Command {
	var org, keyFile string
	cmd := &cobra.Command{
		Use:     "sign ID --org ORG --org-key org.key",
		Short:   "Sign an agreement's terms as one of its parties",
		Long:    agreementSignLong,
		Example: "  trustfed agreement sign agr-0123456789abcdef --org acme-bank --org-key acme-bank.key",
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if err := validateAgreementID(id); err != nil {
				return err
			}
			if err := validateOrgID("--org", org); err != nil {
				return err
			}
			key, err := loadOrgKey(keyFile)
			if err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				got, err := c.Admin().GetAgreement(ctx, &trustfedv1.GetAgreementRequest{AgreementId: id})
				if err != nil {
					return err
				}
				terms, err := termsToSign(got.GetAgreement(), id, org)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "signing as %s: %s\n", org, summarizeTerms(terms))
				req := agreementSignature(got.GetAgreement(), org, key)
				resp, err := call(ctx, c.Membership().SignAgreement, req)
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeAgreement(w, resp.GetAgreement(), nil) })
			})
		},
	}
	cmd.Flags().StringVar(&org, "org", "", "the signing party (required)")
	cmd.Flags().StringVar(&keyFile, "org-key", "", "the organisation's ed25519 private key (required)")
	cmd.Flags().StringVar(&keyFile, "key", "", "")
	_ = cmd.Flags().MarkDeprecated("key", "use --org-key")
	_ = cmd.MarkFlagRequired("org")
	cmd.MarkFlagsOneRequired("org-key", "key")
	return cmd
}

// termsToSign parses the terms bytes of an agreement read from the server
// and checks that they are the terms of agreement id and name org as a
// party: what is shown and signed is what the bytes say, not the server's
// parsed copy.
func termsToSign(ag *trustfedv1.Agreement, id, org string) (*trustfedv1.AgreementTerms, error) {
	if len(ag.GetTerms()) == 0 {
		return nil, fmt.Errorf("agreement %s has no terms to sign", id)
	}
	var terms trustfedv1.AgreementTerms
	if err := proto.Unmarshal(ag.GetTerms(), &terms); err != nil {
		return nil, fmt.Errorf("agreement %s: terms are not a trustfed.v1.AgreementTerms: %w", id, err)
	}
	if terms.GetAgreementId() != id {
		return nil, fmt.Errorf("agreement %s: its terms name agreement %q", id, terms.GetAgreementId())
	}
	if org != terms.GetOrganizationAId() && org != terms.GetOrganizationBId() {
		return nil, usageErrorf("%s is not a party to agreement %s (%s and %s are)", org, id, terms.GetOrganizationAId(), terms.GetOrganizationBId())
	}
	return &terms, nil
}

// agreementSignature signs an agreement's terms bytes for PurposeAgreement.
func agreementSignature(ag *trustfedv1.Agreement, org string, key ed25519.PrivateKey) *trustfedv1.SignAgreementRequest {
	return &trustfedv1.SignAgreementRequest{
		AgreementId:    ag.GetId(),
		OrganizationId: org,
		Signature:      attestation.Sign(key, attestation.PurposeAgreement, ag.GetTerms()),
		RequestId:      client.NewRequestID(),
	}
}

func newAgreementTerminateCmd(a *app) *cobra.Command {
	var org, keyFile, reason string
	cmd := &cobra.Command{
		Use:   "terminate ID --org ORG --org-key org.key --reason REASON",
		Short: "Terminate an agreement as one of its parties (signed with the party's key)",
		Long: `Terminate an agreement at the request of one of its parties. The command
builds the termination (agreement, party, reason), signs it with the party's
private key (--org-key) and submits it. Checks between the two organisations are
denied from then on.`,
		Example: `  trustfed agreement terminate agr-0123456789abcdef --org st-mary --org-key st-mary.key --reason "project ended"`,
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validateAgreementID(args[0]); err != nil {
				return err
			}
			if err := validateOrgID("--org", org); err != nil {
				return err
			}
			if err := validateReason(reason); err != nil {
				return err
			}
			key, err := loadOrgKey(keyFile)
			if err != nil {
				return err
			}
			req, err := signTermination(args[0], org, reason, key)
			if err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := call(ctx, c.Membership().TerminateAgreement, req)
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeAgreement(w, resp.GetAgreement(), nil) })
			})
		},
	}
	cmd.Flags().StringVar(&org, "org", "", "the terminating party (required)")
	cmd.Flags().StringVar(&keyFile, "org-key", "", "the organisation's ed25519 private key (required)")
	cmd.Flags().StringVar(&keyFile, "key", "", "")
	_ = cmd.Flags().MarkDeprecated("key", "use --org-key")
	cmd.Flags().StringVar(&reason, "reason", "", "why the agreement ends (required, recorded)")
	cmd.MarkFlagsOneRequired("org-key", "key")
	for _, name := range []string{"org", "reason"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

// signTermination serializes an AgreementTermination once and signs those
// bytes for PurposeTermination.
func signTermination(agreementID, org, reason string, key ed25519.PrivateKey) (*trustfedv1.TerminateAgreementRequest, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&trustfedv1.AgreementTermination{
		AgreementId:    agreementID,
		OrganizationId: org,
		Reason:         reason,
	})
	if err != nil {
		return nil, fmt.Errorf("encode termination: %w", err)
	}
	return &trustfedv1.TerminateAgreementRequest{
		Termination: b,
		Signature:   attestation.Sign(key, attestation.PurposeTermination, b),
		RequestId:   client.NewRequestID(),
	}, nil
}

func newAgreementListCmd(a *app) *cobra.Command {
	var stale bool
	var org string
	var pageSize uint32
	cmd := &cobra.Command{
		Use:   "list [--org ID]",
		Short: "List agreements, or those an organisation is party to",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if org != "" {
				if err := validateOrgID("--org", org); err != nil {
					return err
				}
			}
			if pageSize > 1000 {
				return usageErrorf("--page-size must be at most 1000")
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				all := &trustfedv1.ListAgreementsResponse{}
				err := collectPages(func(token string) (string, error) {
					resp, err := c.Admin().ListAgreements(ctx, &trustfedv1.ListAgreementsRequest{
						OrganizationId: org, PageSize: pageSize, PageToken: token, Consistency: readConsistency(stale),
					})
					if err != nil {
						return "", err
					}
					all.Agreements = append(all.Agreements, resp.GetAgreements()...)
					all.Meta = resp.GetMeta()
					return resp.GetNextPageToken(), nil
				})
				if err != nil {
					return err
				}
				return a.print(all, func(w io.Writer) error { return writeAgreements(w, all.GetAgreements()) })
			})
		},
	}
	addStaleFlag(cmd, &stale)
	cmd.Flags().StringVar(&org, "org", "", "only agreements this organisation is party to")
	cmd.Flags().Uint32Var(&pageSize, "page-size", 0, "results per request, all pages are fetched (0 = server default)")
	return cmd
}

func newAgreementGetCmd(a *app) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Show an agreement",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validateAgreementID(args[0]); err != nil {
				return err
			}
			req := &trustfedv1.GetAgreementRequest{AgreementId: args[0], Consistency: readConsistency(stale)}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Admin().GetAgreement(ctx, req)
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeAgreement(w, resp.GetAgreement(), resp.GetMeta()) })
			})
		},
	}
	addStaleFlag(cmd, &stale)
	return cmd
}
