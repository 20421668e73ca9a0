package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
)

// defaultNodeKeyValidity is how long "key endorse" endorses a key unless
// --valid-for says otherwise.
const defaultNodeKeyValidity = 365 * 24 * time.Hour

func newKeyCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Registry node signing keys: endorse, revoke, list",
		Long: `Each registry node signs with its own key, generated in its data directory
(node-signing.key, mode 0600); only its public half enters the replicated
state, endorsed by the admin quorum. A node signs decisions only with an
endorsed key valid now. GET /v1/keys lists every endorsed key with its
validity and revocation, so older signatures keep verifying.`,
	}
	cmd.AddCommand(newKeyEndorseCmd(a), newKeyRevokeCmd(a), newKeyListCmd(a))
	return cmd
}

func newKeyEndorseCmd(a *app) *cobra.Command {
	var pubkey, fromNode, reason string
	var validFor time.Duration
	cmd := &cobra.Command{
		Use:   "endorse NODE (--pubkey FILE | --from-node ADDR) [--valid-for D]",
		Short: "Endorse a registry node's own signing key (an admin change)",
		Long: `Endorse node NODE's public signing key for --valid-for from now: from
--pubkey (PKIX PEM) or asked from the node itself (--from-node, its gRPC
address: the Status RPC publishes node_key_id and node_public_key). Check
the key id printed against the one in the node's log ("node signing key
generated") before approving. To rotate, endorse the node's next key before
the current one expires.

` + adminChangesLong,
		Example: `  trustfed key endorse node-2 --from-node node-2.internal:7443 --valid-for 8760h`,
		Args:    exactArgs("NODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			node := args[0]
			if err := state.ValidateNodeID("NODE", node); err != nil {
				return usageErrorf("%v", err)
			}
			if validFor <= 0 || validFor > state.MaxNodeKeyValidity {
				return usageErrorf("--valid-for must be within (0, %s]", state.MaxNodeKeyValidity)
			}
			if (pubkey == "") == (fromNode == "") {
				return usageErrorf("give exactly one of --pubkey FILE and --from-node ADDR")
			}
			a, err := appFromFlags(cmd)
			if err != nil {
				return err
			}
			pub, err := a.nodePublicKey(cmd, node, pubkey, fromNode)
			if err != nil {
				return err
			}
			why, err := changeReason(reason, fmt.Sprintf("endorse node %s signing key %s", node, attestation.Fingerprint(pub)))
			if err != nil {
				return err
			}
			now := time.Now().UTC()
			change := client.EndorseNodeKey(node, pub, now, now.Add(validFor))
			change.Reason = why
			return a.proposeChange(cmd, change, showNodeKeys(node))
		},
	}
	cmd.Flags().StringVar(&pubkey, "pubkey", "", "the node's ed25519 public key, PKIX PEM")
	cmd.Flags().StringVar(&fromNode, "from-node", "", "gRPC address of the node: ask it for its public key")
	cmd.Flags().DurationVar(&validFor, "valid-for", defaultNodeKeyValidity, "how long the endorsement lasts from now (at most 17520h)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded; default: a description of the change)")
	return cmd
}

// nodePublicKey reads a node's public key from a file or asks the node.
func (a *app) nodePublicKey(cmd *cobra.Command, node, file, addr string) (ed25519.PublicKey, error) {
	if file != "" {
		pemText, err := readPublicKeyPEM(file)
		if err != nil {
			return nil, err
		}
		return attestation.ParsePublicKeyPEM([]byte(pemText))
	}
	at := *a
	at.addr = addr
	var pub ed25519.PublicKey
	err := at.withClient(cmd, func(ctx context.Context, c *client.Client) error {
		st, err := c.Cluster().Status(ctx, &trustfedv1.StatusRequest{})
		if err != nil {
			return fmt.Errorf("ask %s for its key: %w", addr, err)
		}
		if st.GetNodeId() != node {
			return usageErrorf("the node at %s is %q, not %q", addr, st.GetNodeId(), node)
		}
		if len(st.GetNodePublicKey()) != ed25519.PublicKeySize {
			return fmt.Errorf("node %q at %s publishes no signing key (an older version?)", node, addr)
		}
		pub = ed25519.PublicKey(st.GetNodePublicKey())
		return nil
	})
	return pub, err
}

func newKeyRevokeCmd(a *app) *cobra.Command {
	var since, reason string
	cmd := &cobra.Command{
		Use:   "revoke NODE KEY_ID --since T",
		Short: "Revoke a node's signing key since T (an admin change)",
		Long: `Emergency revocation: signatures by KEY_ID dated at or after --since (RFC
3339, or "now") stop verifying, on every verifier that fetches GET /v1/keys
again; signatures dated before keep verifying. Set --since to the earliest
time the key may have been in someone else's hands. A revocation can later
be moved earlier, never later.

` + adminChangesLong,
		Example: `  trustfed key revoke node-2 SHA256:3q2+7w... --since 2026-03-01T10:00:00Z`,
		Args:    exactArgs("NODE", "KEY_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseSince(since)
			if err != nil {
				return err
			}
			why, err := changeReason(reason, fmt.Sprintf("revoke node %s signing key %s since %s", args[0], args[1], t.Format(time.RFC3339)))
			if err != nil {
				return err
			}
			a, err := appFromFlags(cmd)
			if err != nil {
				return err
			}
			change := client.RevokeNodeKey(args[0], args[1], t)
			change.Reason = why
			return a.proposeChange(cmd, change, showNodeKeys(args[0]))
		},
	}
	cmd.Flags().StringVar(&since, "since", "", `signatures at or after this time stop verifying: RFC 3339 or "now" (required)`)
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded; default: a description of the change)")
	_ = cmd.MarkFlagRequired("since")
	return cmd
}

func parseSince(s string) (time.Time, error) {
	if s == "now" {
		return time.Now().UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, usageErrorf(`--since: %q is not an RFC 3339 time or "now"`, s)
	}
	return t.UTC(), nil
}

func newKeyListCmd(a *app) *cobra.Command {
	var node string
	cmd := &cobra.Command{
		Use:   "list [--node NODE]",
		Short: "List the published signing keys and their history",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := appFromFlags(cmd)
			if err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Registry().GetKeys(ctx, &trustfedv1.GetKeysRequest{})
				if err != nil {
					return err
				}
				if node != "" {
					resp.Keys = filterKeys(resp.Keys, node)
				}
				return a.print(resp, func(w io.Writer) error { return writeKeys(w, resp.Keys) })
			})
		},
	}
	cmd.Flags().StringVar(&node, "node", "", "only this node's keys")
	return cmd
}

func filterKeys(keys []*trustfedv1.RegistryKey, node string) []*trustfedv1.RegistryKey {
	var out []*trustfedv1.RegistryKey
	for _, k := range keys {
		if k.GetNodeId() == node {
			out = append(out, k)
		}
	}
	return out
}

// showNodeKeys prints a node's keys after a change applied to them.
func showNodeKeys(node string) func(ctx context.Context, c *client.Client, w io.Writer) error {
	return func(ctx context.Context, c *client.Client, w io.Writer) error {
		resp, err := c.Registry().GetKeys(ctx, &trustfedv1.GetKeysRequest{})
		if err != nil {
			return err
		}
		return writeKeys(w, filterKeys(resp.Keys, node))
	}
}

func writeKeys(w io.Writer, keys []*trustfedv1.RegistryKey) error {
	t := newTable(w)
	t.row("KEY ID", "NODE", "VALID FROM", "VALID UNTIL", "REVOKED SINCE")
	for _, k := range keys {
		t.row(k.GetKeyId(), orDash(k.GetNodeId()), fmtStamp(k.GetValidFrom()), fmtStamp(k.GetValidUntil()), fmtStamp(k.GetRevokeTime()))
	}
	return t.flush()
}

func fmtStamp(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return strings.TrimSpace(ts.AsTime().UTC().Format(time.RFC3339))
}
