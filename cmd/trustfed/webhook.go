package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/registry/state"
)

func newOrgSetWebhookCmd(a *app) *cobra.Command {
	var keyFile string
	var endpoints, caFiles []string
	cmd := &cobra.Command{
		Use:   "set-webhook ID --org-key org.key [--endpoint URL]... [--ca-file ca.pem]...",
		Short: "Replace an organisation's webhook endpoints and their CA certificates, signed with its key",
		Long: `Replace where an organisation receives revocation notifications: its webhook
endpoints (https URLs, tried in order) and the CA certificates (PEM) its
endpoints' server certificates chain to, for a private PKI. The settings are
signed with the organisation's private key and replicated; every registry
node verifies the signature. The next notification uses them: no server
restart. The settings replace the previous ones as a whole: give every
endpoint and every CA you want to keep; none at all means notifications only
over the event stream.`,
		Example: `  trustfed org set-webhook acme-bank --org-key acme-bank.key --endpoint https://hooks.acme-bank.example/trustfed --ca-file acme-bank-ca.pem`,
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validateOrgID("organisation id", args[0]); err != nil {
				return err
			}
			if err := state.ValidateEndpoints("--endpoint", endpoints); err != nil {
				return usageErrorf("%v", err)
			}
			var pem strings.Builder
			for _, f := range caFiles {
				b, err := os.ReadFile(f)
				if err != nil {
					return fmt.Errorf("--ca-file: %w", err)
				}
				if err := state.ValidateWebhookCAs("--ca-file "+f, string(b)); err != nil {
					return usageErrorf("%v", err)
				}
				pem.Write(b)
				if len(b) > 0 && b[len(b)-1] != '\n' {
					pem.WriteByte('\n')
				}
			}
			if err := state.ValidateWebhookCAs("--ca-file", pem.String()); err != nil {
				return usageErrorf("%v", err)
			}
			key, err := loadOrgKey(keyFile)
			if err != nil {
				return err
			}
			req, err := client.NewWebhookSettings(key, args[0], endpoints, pem.String(), time.Now())
			if err != nil {
				return err
			}
			req.RequestId = client.NewRequestID()
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := call(ctx, c.Membership().SetWebhook, req)
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
	cmd.Flags().StringArrayVar(&endpoints, "endpoint", nil, "https URL that receives the registry's notifications (repeatable)")
	cmd.Flags().StringArrayVar(&caFiles, "ca-file", nil, "PEM file of CA certificates for the endpoints' server certificates (repeatable)")
	cmd.MarkFlagsOneRequired("org-key", "key")
	return cmd
}
