package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

func newStatusCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the answering node's Raft state and the cluster members",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Cluster().Status(ctx, &trustfedv1.StatusRequest{})
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeStatus(w, resp) })
			})
		},
	}
}
