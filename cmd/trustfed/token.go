package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/ids"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

const tokenLong = `Bearer tokens for people: federation admins, an organisation's governance
authority (acts for its organisation only), regulators (read the audit
trail; federation-wide, or one organisation's with --org) and monitoring
systems (read GET /metrics only, e.g. a Prometheus scraper). Admins create,
list and revoke them. A token's secret is shown once, when it is created: the
registry keeps only its SHA-256. Every token expires (1 minute to 366 days,
default 30 days) and a revoked token stops working on the next call, on every
server. docs/access.md has the details.`

// tokenRoleNames are the --role values.
var tokenRoleNames = map[string]trustfedv1.TokenRole{
	"admin":      trustfedv1.TokenRole_TOKEN_ROLE_ADMIN,
	"governance": trustfedv1.TokenRole_TOKEN_ROLE_GOVERNANCE,
	"regulator":  trustfedv1.TokenRole_TOKEN_ROLE_REGULATOR,
	"monitor":    trustfedv1.TokenRole_TOKEN_ROLE_MONITOR,
}

func newTokenCmd(a *app) *cobra.Command {
	cmd := newGroupCmd("token", "Create, list and revoke bearer tokens for people (admins only)")
	cmd.Aliases = []string{"tokens"}
	cmd.Long = tokenLong
	cmd.AddCommand(newTokenCreateCmd(a), newTokenListCmd(a), newTokenRevokeCmd(a))
	return cmd
}

// tokenCreateOptions are the flags of "token create".
type tokenCreateOptions struct {
	role, org, description, ttl string
}

// request validates the flags and builds the request.
func (o *tokenCreateOptions) request() (*trustfedv1.CreateTokenRequest, error) {
	role, ok := tokenRoleNames[strings.ToLower(strings.TrimSpace(o.role))]
	if !ok {
		return nil, usageErrorf("--role %q: want admin, governance, regulator or monitor", o.role)
	}
	switch {
	case role == trustfedv1.TokenRole_TOKEN_ROLE_GOVERNANCE && o.org == "":
		return nil, usageErrorf("--org is required for a governance token")
	case role == trustfedv1.TokenRole_TOKEN_ROLE_ADMIN && o.org != "":
		return nil, usageErrorf("--org must not be set for an admin token (admins act for the whole federation)")
	case role == trustfedv1.TokenRole_TOKEN_ROLE_MONITOR && o.org != "":
		return nil, usageErrorf("--org must not be set for a monitor token (metrics are the node's, not an organisation's)")
	case o.org != "":
		if err := validateOrgID("--org", o.org); err != nil {
			return nil, err
		}
	}
	if strings.TrimSpace(o.description) == "" {
		return nil, usageErrorf("--description must say whose token it is and why")
	}
	ttl, err := parseDays("--ttl", o.ttl)
	if err != nil {
		return nil, err
	}
	if ttl < time.Minute || ttl > 366*day {
		return nil, usageErrorf("--ttl %s is out of range 1m..366d", o.ttl)
	}
	return &trustfedv1.CreateTokenRequest{Role: role, OrganizationId: o.org, Description: o.description,
		Ttl: durationpb.New(ttl), RequestId: client.NewRequestID()}, nil
}

func newTokenCreateCmd(a *app) *cobra.Command {
	var o tokenCreateOptions
	cmd := &cobra.Command{
		Use:   "create --role admin|governance|regulator|monitor [--org ORG] --description TEXT [--ttl 720h]",
		Short: "Create a token and print its secret (shown only this once)",
		Example: `  trustfed token create --role governance --org acme-bank --description "Acme Bank governance desk" --ttl 90d
  trustfed token create --role regulator --description "EU supervisory authority" --ttl 30d
  trustfed token create --role monitor --description "Prometheus, ops cluster" --ttl 366d
  trustfed -o json token create --role admin --description "Jane Doe, federation operations"`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := o.request()
			if err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := call(ctx, trustfedv1.NewAccessServiceClient(c.Conn()).CreateToken, req)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.ErrOrStderr(), "Keep the secret now: it is shown only once (the registry keeps only its hash).")
				return a.print(resp, func(w io.Writer) error { return writeCreatedToken(w, resp) })
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.role, "role", "", "admin, governance, regulator or monitor (required)")
	f.StringVar(&o.org, "org", "", "the organisation a governance token acts for (required) or a regulator token may read (optional)")
	f.StringVar(&o.description, "description", "", "whose token it is and why, 1..200 characters (required)")
	f.StringVar(&o.ttl, "ttl", "720h", "how long the token works: 1m..366d, e.g. 90d or 720h")
	_ = cmd.MarkFlagRequired("role")
	_ = cmd.MarkFlagRequired("description")
	return cmd
}

func newTokenListCmd(a *app) *cobra.Command {
	var org string
	var all bool
	var pageSize int32
	cmd := &cobra.Command{
		Use:   "list [--org ORG] [--all]",
		Short: "List tokens (never their secrets): usable ones, or with --all revoked and expired ones too",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if org != "" {
				if err := validateOrgID("--org", org); err != nil {
					return err
				}
			}
			if pageSize < 0 {
				return usageErrorf("--page-size must not be negative")
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				access := trustfedv1.NewAccessServiceClient(c.Conn())
				out := &trustfedv1.ListTokensResponse{}
				err := collectPages(func(token string) (string, error) {
					resp, err := access.ListTokens(ctx, &trustfedv1.ListTokensRequest{
						OrganizationId: org, IncludeInactive: all, PageSize: pageSize, PageToken: token,
					})
					if err != nil {
						return "", err
					}
					out.Tokens = append(out.Tokens, resp.GetTokens()...)
					out.Index = resp.GetIndex()
					return resp.GetNextPageToken(), nil
				})
				if err != nil {
					return err
				}
				return a.print(out, func(w io.Writer) error { return writeTokens(w, out.GetTokens(), time.Now()) })
			})
		},
	}
	cmd.Flags().StringVar(&org, "org", "", "only the tokens scoped to this organisation")
	cmd.Flags().BoolVar(&all, "all", false, "also revoked and expired tokens")
	cmd.Flags().Int32Var(&pageSize, "page-size", 0, "results per request, all pages are fetched (0 = server default)")
	return cmd
}

func newTokenRevokeCmd(a *app) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:     "revoke ID --reason TEXT",
		Short:   "Revoke a token: it stops working on the next call, on every server",
		Example: `  trustfed token revoke 3f2a9c0d1b7e --reason "laptop lost"`,
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if !ids.Token.Match(id) {
				return usageErrorf("%q is not a token id (12 lowercase hex digits, as token list shows)", id)
			}
			if strings.TrimSpace(reason) == "" {
				return usageErrorf("--reason must not be empty")
			}
			req := &trustfedv1.RevokeTokenRequest{TokenId: id, Reason: reason, RequestId: client.NewRequestID()}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := call(ctx, trustfedv1.NewAccessServiceClient(c.Conn()).RevokeToken, req)
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeToken(w, resp.GetToken()) })
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, 1..500 characters, recorded (required)")
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}

func formatTokenRole(r trustfedv1.TokenRole) string {
	return strings.ToLower(formatEnum(r.String(), "TOKEN_ROLE_"))
}

// tokenStatus is "active", "expired" or "revoked" at now.
func tokenStatus(t *trustfedv1.TokenInfo, now time.Time) string {
	switch {
	case t.GetRevokeTime() != nil:
		return "revoked"
	case t.GetExpireTime() != nil && !now.Before(t.GetExpireTime().AsTime()):
		return "expired"
	default:
		return "active"
	}
}

// writeCreatedToken prints a new token with its secret.
func writeCreatedToken(w io.Writer, resp *trustfedv1.CreateTokenResponse) error {
	t := newTable(w)
	t.row("Secret:", resp.GetSecret())
	writeTokenRows(t, resp.GetToken())
	return t.flush()
}

// writeToken prints one token as key-value rows.
func writeToken(w io.Writer, tok *trustfedv1.TokenInfo) error {
	t := newTable(w)
	writeTokenRows(t, tok)
	return t.flush()
}

func writeTokenRows(t *table, tok *trustfedv1.TokenInfo) {
	t.row("ID:", tok.GetId())
	t.row("Role:", formatTokenRole(tok.GetRole()))
	t.row("Organization:", orDash(tok.GetOrganizationId()))
	t.row("Description:", tok.GetDescription())
	t.row("Created:", formatTime(tok.GetCreateTime())+" by "+orDash(tok.GetCreatedBy()))
	t.row("Expires:", formatExpiry(tok.GetExpireTime()))
	if tok.GetRevokeTime() != nil {
		t.row("Revoked:", formatTime(tok.GetRevokeTime()))
		t.row("Revoke reason:", tok.GetRevokeReason())
	}
}

// formatExpiry renders an expiry; the bootstrap token has none.
func formatExpiry(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "never"
	}
	return formatTime(ts)
}

// writeTokens prints tokens as a table, with their status at now.
func writeTokens(w io.Writer, toks []*trustfedv1.TokenInfo, now time.Time) error {
	t := newTable(w)
	t.row("ID", "ROLE", "ORGANIZATION", "STATUS", "EXPIRES", "CREATED BY", "DESCRIPTION")
	for _, tok := range toks {
		t.row(tok.GetId(), formatTokenRole(tok.GetRole()), orDash(tok.GetOrganizationId()), tokenStatus(tok, now),
			formatExpiry(tok.GetExpireTime()), orDash(tok.GetCreatedBy()), tok.GetDescription())
	}
	return t.flush()
}
