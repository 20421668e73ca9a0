package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

func newAgreementCmd(a *app) *cobra.Command {
	cmd := newGroupCmd("agreement", "Create and read bilateral agreements")
	cmd.Aliases = []string{"agreements", "agr"}
	cmd.AddCommand(newAgreementCreateCmd(a), newAgreementListCmd(a), newAgreementGetCmd(a))
	return cmd
}

func newAgreementCreateCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "create ORG_A ORG_B",
		Short: "Create a bilateral agreement between two organisations",
		Args:  exactArgs("ORG_A", "ORG_B"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := agreementCreateRequest(args[0], args[1])
			if err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				var resp *trustfedv1.CreateAgreementResponse
				err := client.RetryUnknown(ctx, func(ctx context.Context) (err error) {
					resp, err = c.Admin().CreateAgreement(ctx, req)
					return err
				})
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeAgreement(w, resp.GetAgreement(), nil) })
			})
		},
	}
}

// agreementCreateRequest validates the arguments of "agreement create".
func agreementCreateRequest(orgA, orgB string) (*trustfedv1.CreateAgreementRequest, error) {
	if err := validateOrgID("ORG_A", orgA); err != nil {
		return nil, err
	}
	if err := validateOrgID("ORG_B", orgB); err != nil {
		return nil, err
	}
	if orgA == orgB {
		return nil, usageErrorf("an agreement needs two different organisations")
	}
	return &trustfedv1.CreateAgreementRequest{
		OrganizationAId: orgA,
		OrganizationBId: orgB,
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
			if args[0] == "" {
				return usageErrorf("agreement id is empty")
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
