package system_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	peerv1 "github.com/trustfed/trustfed/proto/trustfed/peer/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Followers send their audit batches over one AppendAuditStream to the
// leader, never one AppendAudit call per batch; the stream follows the
// leadership. Checks run on both followers (stale and linearizable) while
// leadership moves twice: every check is either answered with its
// committed, quorum-certified audit record or refused UNAVAILABLE, no two
// answers share an audit sequence, no decision is in the log twice (a
// batch whose answer was lost with its stream is sent again under its
// batch id and appended once), and after the moves checks on every node
// are answered again.
func TestFollowerAuditStreamAcrossLeaderChanges(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := startCluster(t)
	all := []string{"n1", "n2", "n3"}
	leader := c.leader(t, all...)
	admin := c.clients[leader]
	accredit(t, admin, c.fed, c.admins)
	enrol(t, admin, c.fed, "clinic", 3)
	enrol(t, admin, c.fed, "lab", 3)
	agree(t, admin, c.fed, "clinic", "lab", "task_send")
	members := c.memberClients(t, admin, "clinic")
	keys, err := admin.Keys(ctxT(t))
	require.NoError(t, err)

	type answer struct {
		node string
		resp *trustfedv1.CheckInteractionResponse
		err  error
	}
	var (
		mu      sync.Mutex
		answers []answer
		wg      sync.WaitGroup
	)
	ctx, stop := context.WithCancel(ctxT(t))
	defer stop()
	var followers []string
	for _, id := range all {
		if id != leader {
			followers = append(followers, id)
		}
	}
	for _, id := range followers {
		for i := range 4 {
			consistency := trustfedv1.Consistency_CONSISTENCY_STALE
			if i%2 == 1 {
				consistency = trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE
			}
			wg.Go(func() {
				for ctx.Err() == nil {
					cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
					resp, err := members[id].Registry().CheckInteraction(cctx, &trustfedv1.CheckInteractionRequest{
						FromOrganizationId: "clinic", ToOrganizationId: "lab", Action: "task_send", Consistency: consistency})
					cancel()
					if ctx.Err() != nil {
						return
					}
					mu.Lock()
					answers = append(answers, answer{node: id, resp: resp, err: err})
					mu.Unlock()
				}
			})
		}
	}
	answered := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, a := range answers {
			if a.err == nil {
				n++
			}
		}
		return n
	}
	waitAnswers := func(more int) {
		want := answered() + more
		testutil.Eventually(t, 30*time.Second, fmt.Sprintf("%d answered checks", want), func() error {
			if n := answered(); n < want {
				return fmt.Errorf("%d answered", n)
			}
			return nil
		})
	}
	waitAnswers(20)
	for range 2 {
		_, err := c.clients[leader].Cluster().TransferLeadership(ctxT(t), &trustfedv1.TransferLeadershipRequest{})
		require.NoError(t, err)
		old := leader
		testutil.Eventually(t, 30*time.Second, "a new leader", func() error {
			if leader = c.leader(t, all...); leader == old {
				return fmt.Errorf("%s still leads", old)
			}
			return nil
		})
		waitAnswers(20)
	}
	stop()
	wg.Wait()

	seqs := map[uint64]string{}
	var refused int
	for _, a := range answers {
		if a.err != nil {
			require.Equal(t, codes.Unavailable, status.Code(a.err), "%s: a check is answered or refused UNAVAILABLE: %v", a.node, a.err)
			if refused++; refused <= 5 {
				t.Logf("%s: refused: %v", a.node, a.err)
			}
			continue
		}
		require.NotZero(t, a.resp.AuditSequence, "%s: answered with its audit record", a.node)
		_, err := client.VerifyDecision(a.resp, keys, a.resp.DecidedAt.AsTime())
		require.NoError(t, err, "%s: answered certified", a.node)
		require.Empty(t, seqs[a.resp.AuditSequence], "audit sequence %d answered twice", a.resp.AuditSequence)
		seqs[a.resp.AuditSequence] = a.node
	}
	t.Logf("%d checks answered, %d refused UNAVAILABLE across two leader changes", len(seqs), refused)

	// No decision is in the log twice.
	statements := map[string]uint64{}
	req := &trustfedv1.ListAuditEntriesRequest{Type: "DECISION", PageSize: 500, Consistency: trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE}
	for {
		page, err := c.clients[leader].Audit().ListAuditEntries(ctxT(t), req)
		require.NoError(t, err)
		for _, r := range page.Records {
			st := string(r.Entry.GetDecision().GetStatement())
			require.NotEmpty(t, st)
			first, dup := statements[st]
			require.False(t, dup, "decision at sequence %d is the one at %d again", r.Sequence, first)
			statements[st] = r.Sequence
		}
		if page.NextPageToken == "" {
			break
		}
		req.PageToken, req.TreeSize = page.NextPageToken, page.TreeSize
	}
	logged := statementsBySeq(statements)
	for seq := range seqs {
		require.True(t, logged[seq], "the record of the check answered with sequence %d is in the log", seq)
	}

	// Checks are answered on every node again, and followers used the stream.
	for _, id := range all {
		testutil.Eventually(t, 20*time.Second, id+" answers checks", func() error {
			_, err := members[id].Registry().CheckInteraction(ctxT(t), &trustfedv1.CheckInteractionRequest{
				FromOrganizationId: "clinic", ToOrganizationId: "lab", Action: "task_send", Consistency: trustfedv1.Consistency_CONSISTENCY_STALE})
			return err
		})
	}
	hc := httpsClient(t, c.pki.CAFile)
	var streams, unary float64
	for _, id := range all {
		_, m, _ := scrape(t, hc, "https://"+c.servers[id].Addrs.HTTPAddr, c.token)
		streams += metricValue(m, "grpc_server_started_total", map[string]string{"grpc_method": "AppendAuditStream", "grpc_service": "trustfed.peer.v1.PeerService"})
		unary += metricValue(m, "grpc_server_started_total", map[string]string{"grpc_method": "AppendAudit", "grpc_service": "trustfed.peer.v1.PeerService"})
	}
	require.GreaterOrEqual(t, streams, 2.0, "followers opened audit streams to the leaders")
	require.Zero(t, unary, "no audit batch went as a unary %s call", peerv1.PeerService_AppendAudit_FullMethodName)
}

func statementsBySeq(statements map[string]uint64) map[uint64]bool {
	out := make(map[uint64]bool, len(statements))
	for _, seq := range statements {
		out[seq] = true
	}
	return out
}
