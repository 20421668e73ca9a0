package main

import (
	"context"
	"crypto/ed25519"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/ids"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

const memberLong = `Member nodes are an organisation's gateways to the registry. The
organisation enrols a node's ed25519 public key, signed with the
organisation's registered key ("member enrol"; make the node's key with
"trustfed keygen" on the node). The node then proves it holds the key by
signing a registry challenge and gets a short-lived client certificate for
that key ("member cert", default 24 h; run it again to renew). The node
presents it with --cert/--key (or TRUSTFED_CERT/TRUSTFED_KEY), and the
registry takes the node's organisation from it. Removing a node ("member
remove") makes its certificates stop working on the next call, on every
server. docs/access.md has the details.`

func newMemberCmd(a *app) *cobra.Command {
	cmd := newGroupCmd("member", "Enrol, list and remove member nodes; get a member node's client certificate")
	cmd.Aliases = []string{"members"}
	cmd.Long = memberLong
	cmd.AddCommand(newMemberEnrolCmd(a), newMemberListCmd(a), newMemberRemoveCmd(a), newMemberCertCmd(a))
	return cmd
}

// validateNodeID checks a member node id given on the command line.
func validateNodeID(id string) error {
	if !ids.Node.Match(id) {
		return usageErrorf("node id %q is not valid (%s)", id, ids.Node)
	}
	return nil
}

func validateMemberArgs(org, node string) error {
	if err := validateOrgID("organisation", org); err != nil {
		return err
	}
	return validateNodeID(node)
}

// readPublicKey reads an ed25519 public key (PKIX PEM, as keygen writes FILE.pub).
func readPublicKey(flag, path string) (ed25519.PublicKey, error) {
	if path == "" {
		return nil, usageErrorf("%s is empty", flag)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	pub, err := attestation.ParsePublicKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, path, err)
	}
	return pub, nil
}

func newMemberEnrolCmd(a *app) *cobra.Command {
	var orgKeyFile, nodePubFile string
	cmd := &cobra.Command{
		Use:   "enrol ORG NODE --org-key org.key --node-pubkey node.key.pub",
		Short: "Enrol a member node's public key, signed with the organisation's key",
		Long: `Enrol a member node: the node's ed25519 public key (--node-pubkey, the
FILE.pub of "trustfed keygen --out FILE" run on the node), signed now with the
organisation's registered private key (--org-key). The organisation must be
ACTIVE; the node id is unique within it; a removed node may be enrolled again
with a new key.`,
		Example: `  trustfed member enrol acme-bank gw-1 --org-key acme-bank.key --node-pubkey gw-1.key.pub`,
		Aliases: []string{"enroll"},
		Args:    exactArgs("ORG", "NODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			org, node := args[0], args[1]
			if err := validateMemberArgs(org, node); err != nil {
				return err
			}
			orgKey, err := attestation.LoadPrivateKey(orgKeyFile)
			if err != nil {
				return fmt.Errorf("--org-key: %w", err)
			}
			pub, err := readPublicKey("--node-pubkey", nodePubFile)
			if err != nil {
				return err
			}
			req, err := client.NewMemberEnrolment(orgKey, org, node, pub, time.Now())
			if err != nil {
				return err
			}
			req.RequestId = client.NewRequestID()
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := call(ctx, c.Access().EnrolMemberNode, req)
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeMemberNode(w, resp.GetNode()) })
			})
		},
	}
	cmd.Flags().StringVar(&orgKeyFile, "org-key", "", "the organisation's ed25519 private key, PKCS#8 PEM (required)")
	cmd.Flags().StringVar(&nodePubFile, "node-pubkey", "", "the node's ed25519 public key, PKIX PEM (required)")
	_ = cmd.MarkFlagRequired("org-key")
	_ = cmd.MarkFlagRequired("node-pubkey")
	return cmd
}

func newMemberListCmd(a *app) *cobra.Command {
	var all bool
	var pageSize int32
	cmd := &cobra.Command{
		Use:   "list [ORG] [--all]",
		Short: "List member nodes (an organisation's, or every one's): active ones, or with --all removed ones too",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageErrorf("%s expects at most 1 argument (ORG), got %d", cmd.CommandPath(), len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			org := ""
			if len(args) == 1 {
				org = args[0]
				if err := validateOrgID("organisation", org); err != nil {
					return err
				}
			}
			if pageSize < 0 {
				return usageErrorf("--page-size must not be negative")
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				out := &trustfedv1.ListMemberNodesResponse{}
				err := collectPages(func(token string) (string, error) {
					resp, err := c.Access().ListMemberNodes(ctx, &trustfedv1.ListMemberNodesRequest{
						OrganizationId: org, IncludeRemoved: all, PageSize: pageSize, PageToken: token,
					})
					if err != nil {
						return "", err
					}
					out.Nodes = append(out.Nodes, resp.GetNodes()...)
					out.Index = resp.GetIndex()
					return resp.GetNextPageToken(), nil
				})
				if err != nil {
					return err
				}
				return a.print(out, func(w io.Writer) error { return writeMemberNodes(w, out.GetNodes()) })
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "also removed nodes")
	cmd.Flags().Int32Var(&pageSize, "page-size", 0, "results per request, all pages are fetched (0 = server default)")
	return cmd
}

func newMemberRemoveCmd(a *app) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:     "remove ORG NODE --reason TEXT",
		Short:   "Remove a member node: its certificates stop working on the next call, on every server",
		Example: `  trustfed member remove acme-bank gw-1 --reason "host decommissioned"`,
		Args:    exactArgs("ORG", "NODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			org, node := args[0], args[1]
			if err := validateMemberArgs(org, node); err != nil {
				return err
			}
			if strings.TrimSpace(reason) == "" {
				return usageErrorf("--reason must not be empty")
			}
			req := &trustfedv1.RemoveMemberNodeRequest{OrganizationId: org, NodeId: node, Reason: reason, RequestId: client.NewRequestID()}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := call(ctx, c.Access().RemoveMemberNode, req)
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error { return writeMemberNode(w, resp.GetNode()) })
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, 1..500 characters, recorded (required)")
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}

// memberCertResult is what "member cert" wrote, for -o json.
type memberCertResult struct {
	CertificateFile string    `json:"certificateFile"`
	Serial          string    `json:"serial"`
	NotAfter        time.Time `json:"notAfter"`
	Identity        string    `json:"identity"`
}

func newMemberCertCmd(a *app) *cobra.Command {
	var keyFile, outCert string
	var validity time.Duration
	cmd := &cobra.Command{
		Use:   "cert ORG NODE --node-key node.key --out-cert node.crt [--validity 24h]",
		Short: "Get (or renew) the member node's client certificate by signing a registry challenge with its key",
		Long: `Get a client certificate for a member node: ask the registry for a
challenge, sign it with the node's private key (--node-key, which never leaves
this machine) and exchange it for a certificate for that key, written to
--out-cert (replaced if it exists). Needs no token. Run it again before the
certificate expires to renew it. Use the certificate with --cert node.crt
--key node.key (or TRUSTFED_CERT/TRUSTFED_KEY).`,
		Example: `  trustfed member cert acme-bank gw-1 --node-key gw-1.key --out-cert gw-1.crt
  trustfed --cert gw-1.crt --key gw-1.key check --from acme-bank --to globex --action ping`,
		Args: exactArgs("ORG", "NODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			org, node := args[0], args[1]
			if err := validateMemberArgs(org, node); err != nil {
				return err
			}
			if outCert == "" {
				return usageErrorf("--out-cert is required")
			}
			if validity < 0 {
				return usageErrorf("--validity must not be negative")
			}
			key, err := attestation.LoadPrivateKey(keyFile)
			if err != nil {
				return fmt.Errorf("--node-key: %w", err)
			}
			// No client certificate: the current one may have expired, and
			// the challenge needs none.
			ctx := cmd.Context()
			if err := checkAddr(a.addr); err != nil {
				return err
			}
			token, err := a.resolveToken(cmd)
			if err != nil {
				return err
			}
			c, err := client.New(ctx, client.Config{Addr: a.addr, Token: token, CACertFile: a.cacert, Timeout: a.timeout})
			if err != nil {
				return err
			}
			defer func() { _ = c.Close() }()
			_, leaf, err := client.RequestMemberCertificate(ctx, c, org, node, key, validity)
			if err != nil {
				return connectionHint(err, a.addr, a.cacert, a.timeout)
			}
			certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})
			if err := attestation.WriteFile(outCert, certPEM, 0o644, true); err != nil {
				return err
			}
			res := memberCertResult{CertificateFile: outCert, Serial: leaf.SerialNumber.Text(16), NotAfter: leaf.NotAfter.UTC(), Identity: attestation.MemberSPIFFEID(org, node)}
			if jsonOutput(cmd) {
				return writePlainJSON(cmd.OutOrStdout(), res)
			}
			t := newTable(cmd.OutOrStdout())
			t.row("Certificate:", res.CertificateFile)
			t.row("Identity:", res.Identity)
			t.row("Serial:", res.Serial)
			t.row("Not after:", res.NotAfter.Format(time.RFC3339))
			return t.flush()
		},
	}
	cmd.Flags().StringVar(&keyFile, "node-key", "", "the node's ed25519 private key, PKCS#8 PEM (required)")
	cmd.Flags().StringVar(&outCert, "out-cert", "", "where to write the certificate (PEM; replaced if it exists) (required)")
	cmd.Flags().DurationVar(&validity, "validity", 0, "how long the certificate is valid (0 = the registry's default, 24h; at most the server's -member-cert-ttl)")
	_ = cmd.MarkFlagRequired("node-key")
	_ = cmd.MarkFlagRequired("out-cert")
	return cmd
}

func formatMemberStatus(s trustfedv1.MemberNodeStatus) string {
	return strings.ToLower(formatEnum(s.String(), "MEMBER_NODE_STATUS_"))
}

func writeMemberNode(w io.Writer, n *trustfedv1.MemberNode) error {
	t := newTable(w)
	t.row("Organisation:", n.GetOrganizationId())
	t.row("Node:", n.GetNodeId())
	t.row("Identity:", attestation.MemberSPIFFEID(n.GetOrganizationId(), n.GetNodeId()))
	t.row("Status:", formatMemberStatus(n.GetStatus()))
	if len(n.GetPublicKey()) == ed25519.PublicKeySize {
		t.row("Key:", attestation.Fingerprint(n.GetPublicKey()))
	}
	t.row("Enrolled:", formatTime(n.GetEnrolTime()))
	if n.GetRemoveTime() != nil {
		t.row("Removed:", formatTime(n.GetRemoveTime()))
		t.row("Reason:", n.GetRemoveReason())
	}
	if n.GetLastCertificateSerial() != "" {
		t.row("Last certificate:", n.GetLastCertificateSerial()+" at "+formatTime(n.GetLastCertificateTime()))
	}
	return t.flush()
}

func writeMemberNodes(w io.Writer, nodes []*trustfedv1.MemberNode) error {
	t := newTable(w)
	t.row("ORGANISATION", "NODE", "STATUS", "KEY", "ENROLLED", "LAST CERTIFICATE")
	for _, n := range nodes {
		key := "-"
		if len(n.GetPublicKey()) == ed25519.PublicKeySize {
			key = attestation.Fingerprint(n.GetPublicKey())
		}
		t.row(n.GetOrganizationId(), n.GetNodeId(), formatMemberStatus(n.GetStatus()), key, formatTime(n.GetEnrolTime()), formatTime(n.GetLastCertificateTime()))
	}
	return t.flush()
}
