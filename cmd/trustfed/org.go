package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// maxPages bounds how many pages a list command follows.
const maxPages = 10000

func newOrgCmd(a *app) *cobra.Command {
	cmd := newGroupCmd("org", "Register, approve, read and change member organisations")
	cmd.Aliases = []string{"orgs", "organization"}
	cmd.AddCommand(
		newOrgRegisterCmd(a),
		newOrgApproveCmd(a),
		newOrgOverrideOnboardingCmd(a),
		newOrgStatusCmd(a, "suspend", "Suspend an organisation: every check involving it is denied and its agreements end", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED),
		newOrgStatusCmd(a, "reactivate", "Reactivate a suspended organisation (its ended agreements stay ended)", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE),
		newOrgStatusCmd(a, "revoke", "Revoke an organisation for good: every check involving it is denied and its agreements end", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED),
		newOrgSetLevelCmd(a),
		newOrgPassportCmd(a),
		newOrgSetWebhookCmd(a),
		newOrgGraphCmd(a),
		newOrgGetCmd(a),
		newOrgListCmd(a),
	)
	return cmd
}

func newOrgApproveCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "approve ID",
		Short: "Approve a pending registration (the organisation becomes ACTIVE; onboarding starts)",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validateOrgID("organisation id", args[0]); err != nil {
				return err
			}
			req := &trustfedv1.ApproveOrganizationRequest{OrganizationId: args[0]}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := call(ctx, c.Admin().ApproveOrganization, req)
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeOrganization(w, resp.GetOrganization(), nil) })
			})
		},
	}
}

func newOrgOverrideOnboardingCmd(a *app) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:     "override-onboarding ID --reason REASON",
		Short:   "End an organisation's onboarding cap early (an admin change; the reason is recorded)",
		Example: `  trustfed org override-onboarding acme-bank --reason "long-standing partner, assessed on site"`,
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			change, err := orgOverrideChange(args[0], reason)
			if err != nil {
				return err
			}
			return a.proposeChange(cmd, change, showOrganization(args[0]))
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the cap is lifted early (required, recorded)")
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}

// orgOverrideChange validates the arguments of "org override-onboarding".
func orgOverrideChange(id, reason string) (*trustfedv1.AdminChange, error) {
	if err := validateOrgID("organisation id", id); err != nil {
		return nil, err
	}
	if err := validateReason(reason); err != nil {
		return nil, err
	}
	return &trustfedv1.AdminChange{Reason: reason, Change: &trustfedv1.AdminChange_OverrideOnboarding{OverrideOnboarding: &trustfedv1.OverrideOnboardingChange{OrganizationId: id}}}, nil
}

// newOrgStatusCmd builds "org suspend", "org reactivate" and "org revoke".
func newOrgStatusCmd(a *app, verb, short string, status trustfedv1.OrganizationStatus) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   verb + " ID --reason REASON",
		Short: short + " (an admin change)",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validateOrgID("organisation id", args[0]); err != nil {
				return err
			}
			if err := validateReason(reason); err != nil {
				return err
			}
			change := &trustfedv1.AdminChange{Reason: reason, Change: &trustfedv1.AdminChange_SetOrganizationStatus{
				SetOrganizationStatus: &trustfedv1.SetOrganizationStatusChange{OrganizationId: args[0], Status: status}}}
			return a.proposeChange(cmd, change, showOrganization(args[0]))
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (required, recorded)")
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}

func newOrgGetCmd(a *app) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Show an organisation",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validateOrgID("organisation id", args[0]); err != nil {
				return err
			}
			req := &trustfedv1.GetOrganizationRequest{OrganizationId: args[0], Consistency: readConsistency(stale)}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Registry().GetOrganization(ctx, req)
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeOrganization(w, resp.GetOrganization(), resp.GetMeta()) })
			})
		},
	}
	addStaleFlag(cmd, &stale)
	return cmd
}

func newOrgListCmd(a *app) *cobra.Command {
	var stale bool
	var pageSize uint32
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List every organisation",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pageSize > 1000 {
				return usageErrorf("--page-size must be at most 1000")
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				all := &trustfedv1.ListOrganizationsResponse{}
				err := collectPages(func(token string) (string, error) {
					resp, err := c.Registry().ListOrganizations(ctx, &trustfedv1.ListOrganizationsRequest{
						PageSize: pageSize, PageToken: token, Consistency: readConsistency(stale),
					})
					if err != nil {
						return "", err
					}
					all.Organizations = append(all.Organizations, resp.GetOrganizations()...)
					all.Meta = resp.GetMeta()
					return resp.GetNextPageToken(), nil
				})
				if err != nil {
					return err
				}
				return a.print(all, func(w io.Writer) error { return writeOrganizations(w, all.GetOrganizations()) })
			})
		},
	}
	addStaleFlag(cmd, &stale)
	cmd.Flags().Uint32Var(&pageSize, "page-size", 0, "results per request, all pages are fetched (0 = server default)")
	return cmd
}

// collectPages calls fetch with "" and then each next-page token until
// there is none.
func collectPages(fetch func(token string) (next string, err error)) error {
	token := ""
	seen := map[string]bool{}
	for range maxPages {
		next, err := fetch(token)
		if err != nil {
			return err
		}
		if next == "" {
			return nil
		}
		if seen[next] {
			return fmt.Errorf("server repeated page token %q", next)
		}
		seen[next] = true
		token = next
	}
	return fmt.Errorf("more than %d pages", maxPages)
}

func newOrgSetLevelCmd(a *app) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "set-level ID N",
		Short: "Change an organisation's declared trust level, 0..4 or its name (an admin change)",
		Long: `Change an organisation's declared trust level (0..4 or its name). Its
effective level stays capped by its passport and onboarding.

` + adminChangesLong,
		Args: exactArgs("ID", "N"),
		RunE: func(cmd *cobra.Command, args []string) error {
			change, err := orgSetLevelChange(args[0], args[1], reason)
			if err != nil {
				return err
			}
			return a.proposeChange(cmd, change, showOrganization(args[0]))
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded; default: a description of the change)")
	return cmd
}

// orgSetLevelChange validates the arguments of "org set-level".
func orgSetLevelChange(id, level, reason string) (*trustfedv1.AdminChange, error) {
	if err := validateOrgID("organisation id", id); err != nil {
		return nil, err
	}
	l, err := parseLevel(level)
	if err != nil {
		return nil, err
	}
	why, err := changeReason(reason, fmt.Sprintf("set declared level of %s to %s", id, formatLevel(l)))
	if err != nil {
		return nil, err
	}
	return &trustfedv1.AdminChange{Reason: why, Change: &trustfedv1.AdminChange_SetDeclaredLevel{
		SetDeclaredLevel: &trustfedv1.SetDeclaredLevelChange{OrganizationId: id, Level: l}}}, nil
}
