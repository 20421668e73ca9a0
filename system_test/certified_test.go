package system_test

import (
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// AG-783 Scenario C with a compromised node that LEADS: n1 runs a build
// that turns every denial it decides into an ALLOW and vouches for every
// decision batch without re-evaluating it (registry/forge_on.go). The two
// honest replicas re-derive each decision from their own state and sign a
// head that lists the forged decisions refused; the head n1 computed
// (refusing nothing) differs, so n1 never gathers the 2 signatures over
// its head that a decision needs: every check it decides is UNAVAILABLE,
// never a forged ALLOW. The
// honest nodes keep answering certified decisions (the forger's signature
// over an honest batch is one more, not a needed one), count the batches
// they did not vouch for in full (metric) and log why. A certificate the forger makes with
// its own key alone, for a forged statement, is refused by members: one
// valid node signature where two are needed.
func TestForgingLeaderCannotGetADecisionCertified(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	forger := forgeBin(t)
	c := startClusterWith(t, clusterHooks{binary: func(id string) string {
		if id == "n1" {
			return forger
		}
		return bin
	}})
	require.Equal(t, "n1", c.leader(t, "n1", "n2", "n3"), "the forger leads")
	n1 := c.clients["n1"]
	accredit(t, n1, c.fed, c.admins)
	enrol(t, n1, c.fed, "clinic", 3)
	enrol(t, n1, c.fed, "lab", 3)
	agree(t, n1, c.fed, "clinic", "lab", "task_send", "agent_spawn")
	members := c.memberClients(t, n1, "clinic")
	keys, err := n1.Keys(ctxT(t))
	require.NoError(t, err)
	spawn := &trustfedv1.CheckInteractionRequest{FromOrganizationId: "clinic", ToOrganizationId: "lab", Action: "agent_spawn"} // needs level 4: DENY

	for i := range 5 {
		resp, err := members["n1"].Registry().CheckInteraction(ctxT(t), spawn)
		require.Error(t, err, "check %d through the forging leader answered %v", i, resp.GetDecision())
		require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
		require.ErrorContains(t, err, "not certified by a quorum")
	}
	for _, id := range []string{"n2", "n3"} {
		resp, err := members[id].Registry().CheckInteraction(ctxT(t), spawn)
		require.NoError(t, err, "%s", id)
		require.Equal(t, trustfedv1.Decision_DECISION_DENY, resp.Decision, "%s", id)
		st, err := client.VerifyDecision(resp, keys, resp.DecidedAt.AsTime())
		require.NoError(t, err, "%s: the honest answer is certified", id)
		require.Equal(t, trustfedv1.Decision_DECISION_DENY, st.Decision)
	}

	hc := httpsClient(t, c.pki.CAFile)
	for _, id := range []string{"n2", "n3"} {
		_, m, _ := scrape(t, hc, "https://"+c.servers[id].Addrs.HTTPAddr, c.token)
		require.GreaterOrEqual(t, metricValue(m, "trustfed_cosign_batches_refused_total", nil), 1.0, "%s counts the batches it did not vouch for", id)
		require.Contains(t, c.servers[id].Log(), "decision batch not vouched for", "%s logs why", id)
	}
	_, m, _ := scrape(t, hc, "https://"+c.servers["n1"].Addrs.HTTPAddr, c.token)
	require.GreaterOrEqual(t, metricValue(m, "trustfed_decision_batches_total", map[string]string{"outcome": "not_certified"}), 5.0)

	// What the forger can hand a member on its own: a forged ALLOW with a
	// certificate carrying its own signature only.
	honest, err := members["n2"].Registry().CheckInteraction(ctxT(t), spawn)
	require.NoError(t, err)
	var st trustfedv1.DecisionStatement
	require.NoError(t, proto.Unmarshal(honest.Statement, &st))
	st.Decision, st.Reasons, st.EffectiveLevel, st.FromLevel, st.ToLevel = trustfedv1.Decision_DECISION_ALLOW, nil, 4, 4, 4
	forged := proto.CloneOf(honest)
	forged.Decision, forged.Reasons, forged.EffectiveLevel, forged.FromLevel, forged.ToLevel = st.Decision, nil, 4, 4, 4
	forged.Statement, err = proto.MarshalOptions{Deterministic: true}.Marshal(&st)
	require.NoError(t, err)
	key, err := attestation.LoadPrivateKey(filepath.Join(c.servers["n1"].DataDir, attestation.NodeKeyFile))
	require.NoError(t, err)
	forged.Certificate = forgeCertificate(t, forged.Statement, honest.Certificate, map[string]ed25519.PrivateKey{"n1": key})
	_, err = client.VerifyDecision(forged, keys, time.Now())
	require.True(t, errors.Is(err, attestation.ErrNotCertified), "%v", err)
	require.ErrorContains(t, err, "1 valid node signatures, 2 needed")
	// The same with a second signature made by the same node is still one.
	forged.Certificate.Signatures = append(forged.Certificate.Signatures, forged.Certificate.Signatures[0])
	_, err = client.VerifyDecision(forged, keys, time.Now())
	require.ErrorContains(t, err, "1 valid node signatures, 2 needed")
}

// A server run with -unaudited-decisions answers decisions one node signs
// alone, and says so (CERTIFICATION_SINGLE_NODE); members refuse them by
// default and accept them only when configured to.
func TestUnauditedDecisionsAreSingleNodeAndRefusedByDefault(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	p := startPair(t, "bank-a", 3, "bank-b", 3, []string{"ping"}, "-unaudited-decisions")
	resp, err := p.member.Registry().CheckInteraction(ctxT(t), &trustfedv1.CheckInteractionRequest{FromOrganizationId: "bank-a", ToOrganizationId: "bank-b", Action: "ping"})
	require.NoError(t, err)
	require.Equal(t, trustfedv1.Certification_CERTIFICATION_SINGLE_NODE, resp.Certification)
	require.Nil(t, resp.Certificate)
	require.NotEmpty(t, resp.Signature)
	keys, err := p.admin.Keys(ctxT(t))
	require.NoError(t, err)
	_, err = client.VerifyDecision(resp, keys, resp.DecidedAt.AsTime())
	require.ErrorIs(t, err, attestation.ErrNotCertified)
	st, err := client.VerifyDecisionWith(resp, keys, resp.DecidedAt.AsTime(), attestation.VerifyOptions{AllowSingleNode: true})
	require.NoError(t, err, "accepted when the member allows single-node decisions")
	require.Equal(t, "dev", keys[st.KeyId].GetNodeId())
}

// A replica that re-derives decision batches differently from the quorum
// is the one whose state diverged, and takes itself out: n3 runs a build
// whose evaluation of every decision disagrees (TRUSTFED_FORGE_MODE=dissent,
// as if its state had been altered in memory, past every start-up check).
// n1 and n2 keep certifying checks; n3, signing heads that refuse the
// decisions n1 and n2 both vouched for, marks itself diverged: /readyz 503, every call
// UNAVAILABLE, trustfed_diverged 1, and the healthy majority's audit log
// records its REPORT_DIVERGENCE.
func TestReplicaOutvotedOnADecisionBatchDiverges(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	t.Setenv("TRUSTFED_FORGE_MODE", "dissent") // read by the forge build only
	dissenter := forgeBin(t)
	c := startClusterWith(t, clusterHooks{binary: func(id string) string {
		if id == "n3" {
			return dissenter
		}
		return bin
	}})
	leader := c.leader(t, "n1", "n2", "n3")
	admin := c.clients[leader]
	accredit(t, admin, c.fed, c.admins)
	enrol(t, admin, c.fed, "globex", 2)
	enrol(t, admin, c.fed, "initech", 3)
	members := c.memberClients(t, admin, "globex")
	keys, err := admin.Keys(ctxT(t))
	require.NoError(t, err)
	for _, id := range []string{"n1", "n2"} {
		resp, err := members[id].Registry().CheckInteraction(ctxT(t), &trustfedv1.CheckInteractionRequest{FromOrganizationId: "globex", ToOrganizationId: "initech", Action: "ping"})
		require.NoError(t, err, "%s: n1 and n2 are a quorum", id)
		_, err = client.VerifyDecision(resp, keys, resp.DecidedAt.AsTime())
		require.NoError(t, err)
		for _, s := range resp.Certificate.Signatures {
			require.NotEqual(t, "n3", s.NodeId, "the dissenter's head refuses every decision: another head")
		}
	}
	hc := httpsClient(t, c.pki.CAFile)
	requireDiverged(t, c, "n3", hc)
	require.Contains(t, c.servers["n3"].Log(), "re-derives a decision batch differently from a quorum")
	requireAuditedDivergence(t, c, "n3")
}
