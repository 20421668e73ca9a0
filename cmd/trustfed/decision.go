package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// maxDecisionFile bounds the JSON files `decision verify` reads.
const maxDecisionFile = 4 << 20

func newDecisionCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "decision",
		Short: "Work with signed decisions someone hands you",
	}
	cmd.AddCommand(newDecisionVerifyCmd(a))
	return cmd
}

const decisionVerifyLong = `Verify a decision offline, with the registry's public keys only: no server
is contacted. FILE is the decision as JSON — what "trustfed -o json check"
prints, or any protobuf JSON of a CheckInteractionResponse (field names in
lowerCamelCase or snake_case). --keys is the answer of GET /v1/keys (no
credentials needed to fetch it), saved beforehand.

The checks are client.VerifyDecision's: the decision's quorum certificate
(signatures over its audit batch by a majority of the registry nodes whose
keys --keys lists, each key endorsed for its node and valid at decided_at,
and the statement's inclusion proof in that batch), that every field of the
answer (decision, reasons, levels and the caps on each, agreement, controls,
authorisation, index, times) is the certified one, and that the decision is
still fresh at --at (default: now). A decision one node signed alone (a
registry run with -unaudited-decisions) is refused unless
--allow-single-node. Exit 0 with a one-line summary when it verifies; exit 1
with the reason when it does not.`

func newDecisionVerifyCmd(a *app) *cobra.Command {
	var keysFile, at string
	var opts attestation.VerifyOptions
	cmd := &cobra.Command{
		Use:     "verify FILE --keys KEYS.json [--at RFC3339]",
		Short:   "Verify a signed decision offline with the registry's public keys",
		Long:    decisionVerifyLong,
		Example: "  curl -s https://registry.example:8443/v1/keys > keys.json\n  trustfed decision verify decision.json --keys keys.json",
		Args:    exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			now := time.Now()
			if at != "" {
				t, err := time.Parse(time.RFC3339, at)
				if err != nil {
					return usageErrorf("--at %q is not an RFC 3339 time (e.g. 2026-12-07T09:00:00Z)", at)
				}
				now = t
			}
			var resp trustfedv1.CheckInteractionResponse
			if err := readProtoJSON(args[0], &resp); err != nil {
				return err
			}
			var keysResp trustfedv1.GetKeysResponse
			if err := readProtoJSON(keysFile, &keysResp); err != nil {
				return fmt.Errorf("--keys: %w", err)
			}
			keys, err := client.DecisionKeys(&keysResp)
			if err != nil {
				return fmt.Errorf("--keys %s: %w", keysFile, err)
			}
			if len(keys) == 0 {
				return fmt.Errorf("--keys %s holds no registry key", keysFile)
			}
			st, err := client.VerifyDecisionWith(&resp, keys, now, opts)
			if err != nil {
				return fmt.Errorf("%s does not verify: %w", args[0], err)
			}
			return a.print(st, func(w io.Writer) error {
				_, err := fmt.Fprintln(w, decisionSummary(st, &resp, keys))
				return err
			})
		},
	}
	cmd.Flags().StringVar(&keysFile, "keys", "", "the registry's public keys: a saved GET /v1/keys answer (required)")
	cmd.Flags().StringVar(&at, "at", "", "check freshness at this time instead of now (RFC 3339)")
	cmd.Flags().BoolVar(&opts.AllowSingleNode, "allow-single-node", false, "accept a decision signed by one registry node alone (unaudited registries)")
	cmd.Flags().IntVar(&opts.MinSignatures, "min-signatures", 0, "require at least this many distinct node signatures (default: a majority of the nodes --keys lists)")
	_ = cmd.MarkFlagRequired("keys")
	return cmd
}

// readProtoJSON reads a protobuf JSON file into m.
func readProtoJSON(path string, m proto.Message) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxDecisionFile+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxDecisionFile {
		return fmt.Errorf("%s is larger than %d bytes", path, maxDecisionFile)
	}
	if err := protojson.Unmarshal(data, m); err != nil {
		return fmt.Errorf("%s is not the JSON of a %s: %w", path, m.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}

// decisionSummary is the one line `decision verify` prints.
func decisionSummary(st *trustfedv1.DecisionStatement, resp *trustfedv1.CheckInteractionResponse, keys attestation.DecisionKeys) string {
	var b strings.Builder
	fmt.Fprintf(&b, "VERIFIED %s %s -> %s %s", strings.TrimPrefix(st.GetDecision().String(), "DECISION_"),
		st.GetFromOrganizationId(), st.GetToOrganizationId(), st.GetAction())
	fmt.Fprintf(&b, " (effective level %d, required %d)", st.GetEffectiveLevel(), st.GetRequiredLevel())
	if n := len(st.GetReasons()); n > 0 {
		codes := make([]string, n)
		for i, r := range st.GetReasons() {
			codes[i] = r.GetCode()
		}
		fmt.Fprintf(&b, " reasons %s", strings.Join(codes, ","))
	}
	if st.GetAuthorizationId() != "" {
		fmt.Fprintf(&b, " authorization %s", st.GetAuthorizationId())
	}
	fmt.Fprintf(&b, " at index %d, decided %s, valid until %s, %s",
		st.GetIndex(), st.GetDecidedAt().AsTime().UTC().Format(time.RFC3339), st.GetValidUntil().AsTime().UTC().Format(time.RFC3339), vouchedBy(resp, keys))
	return b.String()
}

// vouchedBy says who vouches for a verified decision: the nodes of its
// quorum certificate, or the one node that signed it.
func vouchedBy(resp *trustfedv1.CheckInteractionResponse, keys attestation.DecisionKeys) string {
	cert := resp.GetCertificate()
	if cert == nil {
		if node := keys[resp.GetKeyId()].GetNodeId(); node != "" {
			return fmt.Sprintf("signed by node %s alone (key %s)", node, resp.GetKeyId())
		}
		return "signed by registry key " + resp.GetKeyId()
	}
	var nodes []string
	for _, s := range cert.GetSignatures() {
		nodes = append(nodes, s.GetNodeId())
	}
	return fmt.Sprintf("certified by %d registry nodes (%s; quorum %d)", len(nodes), strings.Join(nodes, ", "),
		attestation.Quorum(keys, resp.GetDecidedAt().AsTime()))
}
