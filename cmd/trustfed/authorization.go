package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// newAuthorizationCmd groups the dual-authorisation verbs (AG-783 TC5).
func newAuthorizationCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "authorization",
		Short: "Dual authorisation of interactions whose controls require two approvals",
		Long: `An interaction whose resolved controls require dual authorisation is denied
(DUAL_AUTHORIZATION_REQUIRED) until each party approves an authorisation for
exactly that interaction: request one, have both parties approve it with their
keys, then run the check again with --authorization ID.`,
	}
	cmd.AddCommand(newAuthorizationRequestCmd(a), newAuthorizationApproveCmd(a), newAuthorizationGetCmd(a))
	return cmd
}

func newAuthorizationRequestCmd(a *app) *cobra.Command {
	var from, to, action, dataTypes string
	var value int64
	var maxUses uint32
	cmd := &cobra.Command{
		Use:     "request --from ORG --to ORG --action ACTION [--value N] [--data-types T,...] [--max-uses N]",
		Short:   "Open a dual-authorisation request for one interaction",
		Example: "  trustfed authorization request --from bank-a --to bank-b --action task_send --value 600000",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			check, err := interactionRequest(from, to, action, dataTypes, value, false)
			if err != nil {
				return err
			}
			req := &trustfedv1.RequestAuthorizationRequest{Check: check, RequestId: client.NewRequestID(), MaxUses: maxUses}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := call(ctx, c.Registry().RequestAuthorization, req)
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeAuthorization(w, resp.GetAuthorization()) })
			})
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "organisation whose agent initiates the interaction (required)")
	cmd.Flags().StringVar(&to, "to", "", "counterparty organisation (required)")
	cmd.Flags().StringVar(&action, "action", "", "action (required)")
	cmd.Flags().StringVar(&dataTypes, "data-types", "", "comma-separated PII types the interaction carries")
	cmd.Flags().Int64Var(&value, "value", 0, "value of the action in minor currency units")
	cmd.Flags().Uint32Var(&maxUses, "max-uses", 0, "how many ALLOW decisions the grant may back (default 1: one interaction; at most 1000)")
	for _, f := range []string{"from", "to", "action"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return memberCall(cmd)
}

func newAuthorizationApproveCmd(a *app) *cobra.Command {
	var org, keyFile string
	cmd := &cobra.Command{
		Use:     "approve ID --org ORG --org-key org.key",
		Short:   "Approve a dual-authorisation request as one of the parties",
		Example: "  trustfed authorization approve auth-0123456789abcdef --org bank-a --org-key bank-a.key",
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if !strings.HasPrefix(id, "auth-") {
				return usageErrorf("%q is not an authorization id (auth-...)", id)
			}
			if err := validateOrgID("--org", org); err != nil {
				return err
			}
			key, err := loadOrgKey(keyFile)
			if err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				got, err := c.Registry().GetAuthorization(ctx, &trustfedv1.GetAuthorizationRequest{AuthorizationId: id})
				if err != nil {
					return err
				}
				// Show and sign what the statement bytes say, not the parsed copy.
				var st trustfedv1.AuthorizationStatement
				if err := proto.Unmarshal(got.GetAuthorization().GetStatement(), &st); err != nil || st.AuthorizationId != id {
					return fmt.Errorf("authorization %s: statement does not parse or names another id", id)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "approving as %s: %s -> %s %s value %d, %s, expires %s\n",
					org, st.FromOrganizationId, st.ToOrganizationId, st.Action, st.Value, usesText(st.MaxUses), st.GetExpireTime().AsTime().UTC().Format(time.RFC3339))
				req := &trustfedv1.ApproveAuthorizationRequest{AuthorizationId: id, OrganizationId: org,
					Signature: attestation.Sign(key, attestation.PurposeAuthorization, got.GetAuthorization().GetStatement()), RequestId: client.NewRequestID()}
				resp, err := call(ctx, c.Membership().ApproveAuthorization, req)
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeAuthorization(w, resp.GetAuthorization()) })
			})
		},
	}
	cmd.Flags().StringVar(&org, "org", "", "the approving party (required)")
	cmd.Flags().StringVar(&keyFile, "org-key", "", "the organisation's ed25519 private key (required)")
	cmd.Flags().StringVar(&keyFile, "key", "", "")
	_ = cmd.Flags().MarkDeprecated("key", "use --org-key")
	_ = cmd.MarkFlagRequired("org")
	cmd.MarkFlagsOneRequired("org-key", "key")
	return cmd
}

func newAuthorizationGetCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show a dual-authorisation request and its approvals",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Registry().GetAuthorization(ctx, &trustfedv1.GetAuthorizationRequest{AuthorizationId: args[0]})
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeAuthorization(w, resp.GetAuthorization()) })
			})
		},
	}
}

func writeAuthorization(w io.Writer, au *trustfedv1.Authorization) error {
	st := au.GetParsedStatement()
	t := newTable(w)
	t.row("ID:", au.GetId())
	t.row("Status:", strings.TrimPrefix(au.GetStatus().String(), "AUTHORIZATION_STATUS_"))
	t.row("Interaction:", fmt.Sprintf("%s -> %s %s", st.GetFromOrganizationId(), st.GetToOrganizationId(), st.GetAction()))
	t.row("Value:", fmt.Sprint(st.GetValue()))
	t.row("Expires:", st.GetExpireTime().AsTime().UTC().Format(time.RFC3339))
	if st.GetMaxUses() > 0 {
		t.row("Uses left:", fmt.Sprintf("%d of %d", au.GetUsesRemaining(), st.GetMaxUses()))
	} else {
		t.row("Uses left:", usesText(0))
	}
	if len(au.GetApprovals()) == 0 {
		t.row("Approvals:", "-")
	}
	for i, ap := range au.GetApprovals() {
		label := ""
		if i == 0 {
			label = "Approvals:"
		}
		t.row(label, ap.GetOrganizationId()+" at "+ap.GetTime().AsTime().UTC().Format(time.RFC3339))
	}
	return t.flush()
}

// usesText says how many ALLOW decisions a grant of n uses backs.
func usesText(n uint32) string {
	switch n {
	case 0:
		return "uses not counted (created before max_uses)"
	case 1:
		return "single use"
	}
	return fmt.Sprintf("%d uses", n)
}
