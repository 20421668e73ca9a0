package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// maxPages bounds how many pages a list command follows.
const maxPages = 10000

func newOrgCmd(a *app) *cobra.Command {
	cmd := newGroupCmd("org", "Create, read and change member organisations")
	cmd.Aliases = []string{"orgs", "organization"}
	cmd.AddCommand(newOrgCreateCmd(a), newOrgGetCmd(a), newOrgListCmd(a), newOrgSetLevelCmd(a))
	return cmd
}

func newOrgCreateCmd(a *app) *cobra.Command {
	var name, level string
	cmd := &cobra.Command{
		Use:   "create ID --name NAME [--level N]",
		Short: "Register an organisation",
		Long: `Register an organisation with a caller-chosen ID (^[a-z][a-z0-9-]{1,62}$),
a unique name and a declared trust level: 0 UNTRUSTED, 1 VERIFIED,
2 ATTESTED, 3 TRUSTED, 4 PRIVILEGED (number or name).`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := orgCreateRequest(args[0], name, level)
			if err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				var resp *trustfedv1.CreateOrganizationResponse
				err := client.RetryUnknown(ctx, func(ctx context.Context) (err error) {
					resp, err = c.Admin().CreateOrganization(ctx, req)
					return err
				})
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeOrganization(w, resp.GetOrganization(), nil) })
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "human-readable, unique name (required)")
	cmd.Flags().StringVar(&level, "level", "0", "declared trust level, 0..4 or its name")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

// orgCreateRequest validates the arguments of "org create".
func orgCreateRequest(id, name, level string) (*trustfedv1.CreateOrganizationRequest, error) {
	if err := validateOrgID("organisation id", id); err != nil {
		return nil, err
	}
	if name == "" || len(name) > 200 {
		return nil, usageErrorf("--name must be 1..200 characters")
	}
	l, err := parseLevel(level)
	if err != nil {
		return nil, err
	}
	return &trustfedv1.CreateOrganizationRequest{
		OrganizationId: id,
		Name:           name,
		DeclaredLevel:  l,
	}, nil
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
	return &cobra.Command{
		Use:   "set-level ID N",
		Short: "Change an organisation's declared trust level (0..4 or its name)",
		Args:  exactArgs("ID", "N"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := orgSetLevelRequest(args[0], args[1])
			if err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				var resp *trustfedv1.UpdateOrganizationResponse
				err := client.RetryUnknown(ctx, func(ctx context.Context) (err error) {
					resp, err = c.Admin().UpdateOrganization(ctx, req)
					return err
				})
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeOrganization(w, resp.GetOrganization(), nil) })
			})
		},
	}
}

// orgSetLevelRequest validates the arguments of "org set-level".
func orgSetLevelRequest(id, level string) (*trustfedv1.UpdateOrganizationRequest, error) {
	if err := validateOrgID("organisation id", id); err != nil {
		return nil, err
	}
	l, err := parseLevel(level)
	if err != nil {
		return nil, err
	}
	return &trustfedv1.UpdateOrganizationRequest{
		OrganizationId: id,
		DeclaredLevel:  proto.Uint32(l),
	}, nil
}
