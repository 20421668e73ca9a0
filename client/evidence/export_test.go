package evidence

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// fakeAudit serves a testLog as the registry does, a few entries a page.
type fakeAudit struct {
	trustfedv1.UnimplementedAuditServiceServer
	trustfedv1.UnimplementedRegistryServiceServer
	l   *testLog
	sth *trustfedv1.GetSignedTreeHeadResponse
}

func (f *fakeAudit) GetSignedTreeHead(context.Context, *trustfedv1.GetSignedTreeHeadRequest) (*trustfedv1.GetSignedTreeHeadResponse, error) {
	return f.sth, nil
}

func (f *fakeAudit) GetKeys(context.Context, *trustfedv1.GetKeysRequest) (*trustfedv1.GetKeysResponse, error) {
	return f.l.keys(), nil
}

func (f *fakeAudit) ListAuditEntries(_ context.Context, req *trustfedv1.ListAuditEntriesRequest) (*trustfedv1.ListAuditEntriesResponse, error) {
	const page = 4
	filters := Filters{Compliance: req.Compliance, OrganizationID: req.OrganizationId}
	if req.Since != nil {
		filters.Since = req.Since.AsTime()
	}
	if req.Until != nil {
		filters.Until = req.Until.AsTime()
	}
	from, _ := strconv.ParseUint(req.PageToken, 10, 64)
	resp := &trustfedv1.ListAuditEntriesResponse{TreeSize: req.TreeSize}
	for seq := from; seq < req.TreeSize; seq++ {
		if len(resp.Records) == page {
			resp.NextPageToken = strconv.FormatUint(seq, 10)
			break
		}
		if !filters.matches(f.l.entries[seq]) {
			continue
		}
		proof, err := f.l.tree.InclusionProof(seq, req.TreeSize)
		if err != nil {
			return nil, err
		}
		resp.Records = append(resp.Records, &trustfedv1.AuditRecord{Sequence: seq, Leaf: f.l.leaves[seq], Entry: f.l.entries[seq], InclusionProof: proof})
	}
	return resp, nil
}

func TestExport(t *testing.T) {
	l := newTestLog(t)
	l.populate()
	fake := &fakeAudit{l: l, sth: l.treeHead()}
	srv := grpc.NewServer()
	trustfedv1.RegisterAuditServiceServer(srv, fake)
	trustfedv1.RegisterRegistryServiceServer(srv, fake)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	c, err := client.New(context.Background(), client.Config{Addr: ln.Addr().String(), Insecure: true, Timeout: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })

	f := Filters{Compliance: hipaa, Since: t0.Add(3 * time.Minute)}
	var buf bytes.Buffer
	var last [2]int
	require.NoError(t, Export(context.Background(), c, f, &buf, func(done, total int) { last = [2]int{done, total} }))
	require.Equal(t, [2]int{len(l.entries), len(l.entries)}, last)
	rep, err := Verify(&buf, l.vkey)
	require.NoError(t, err)
	require.Equal(t, len(l.records(f, uint64(len(l.entries)))), rep.Entries)
	require.Equal(t, f.render(), rep.Filters.render())

	// A tree head signed by a key the registry does not publish is refused.
	other := newTestLog(t)
	other.populate()
	fake.sth = other.treeHead()
	require.ErrorIs(t, Export(context.Background(), c, f, &buf, nil), client.ErrAuditProof)
}
