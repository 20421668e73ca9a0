package evidence

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// exportPage is the page size Export asks for (the most the server serves).
const exportPage = 1000

// Export writes to w the evidence bundle of the entries of the registry c
// talks to that match f. It fetches the newest signed tree head and checks
// it with the keys GetKeys publishes (which trusts the node: a quorum of
// the endorsed node keys must have certified it; a cluster without node
// keys signs with its registry key, check the bundle with a pinned key
// afterwards, Verify(bundle, vkey)), then pages through ListAuditEntries with inclusion proofs in that
// one tree, which Build checks. progress, if not nil, is called after each
// page with the log position reached and the tree's size.
func Export(ctx context.Context, c *client.Client, f Filters, w io.Writer, progress func(done, total int)) error {
	sth, err := c.Audit().GetSignedTreeHead(ctx, &trustfedv1.GetSignedTreeHeadRequest{})
	if err != nil {
		return fmt.Errorf("get signed tree head: %w", err)
	}
	keys, err := c.Registry().GetKeys(ctx, &trustfedv1.GetKeysRequest{})
	if err != nil {
		return fmt.Errorf("get registry keys: %w", err)
	}
	var cp attestation.Checkpoint
	if attestation.NodeKeysPublished(keys.GetKeys()) {
		// Certified by a quorum of the registry nodes.
		byID := attestation.DecisionKeys{}
		for _, k := range keys.GetKeys() {
			byID[k.KeyId] = k
		}
		if cp, err = client.VerifyTreeHeadWithKeys(sth, byID, nil, 0); err != nil {
			return err
		}
	} else {
		if err := publishedKey(keys, sth); err != nil {
			return err
		}
		if cp, err = client.VerifyTreeHead(sth, sth.VerifierKey, nil, 0); err != nil {
			return err
		}
	}
	req := &trustfedv1.ListAuditEntriesRequest{
		OrganizationId: f.OrganizationID, Compliance: f.Compliance,
		PageSize: exportPage, WithProofs: true, TreeSize: cp.Size,
	}
	if !f.Since.IsZero() {
		req.Since = timestamppb.New(f.Since)
	}
	if !f.Until.IsZero() {
		req.Until = timestamppb.New(f.Until)
	}
	p := &pager{ctx: ctx, c: c, req: req, size: cp.Size, progress: progress, seen: map[string]bool{}}
	return Build(w, Input{TreeHead: sth, Keys: keys, Filters: f, Next: p.next}, nil)
}

// publishedKey checks that the tree head's verifier key is that of a key
// the registry publishes.
func publishedKey(keys *trustfedv1.GetKeysResponse, sth *trustfedv1.GetSignedTreeHeadResponse) error {
	for _, k := range keys.GetKeys() {
		if vkey, err := attestation.CheckpointVerifierKey(sth.GetOrigin(), k.GetPublicKey()); err == nil && vkey == sth.GetVerifierKey() {
			return nil
		}
	}
	return fmt.Errorf("%w: the tree head's verifier key %q is not one of the registry's published keys", client.ErrAuditProof, sth.GetVerifierKey())
}

// pager yields the records of ListAuditEntries one by one, a page at a time.
type pager struct {
	ctx      context.Context
	c        *client.Client
	req      *trustfedv1.ListAuditEntriesRequest
	size     uint64
	progress func(done, total int)
	page     []*trustfedv1.AuditRecord
	done     bool
	seen     map[string]bool
}

func (p *pager) next() (*trustfedv1.AuditRecord, bool, error) {
	for len(p.page) == 0 {
		if p.done {
			return nil, false, nil
		}
		resp, err := p.c.Audit().ListAuditEntries(p.ctx, p.req)
		if err != nil {
			return nil, false, fmt.Errorf("list audit entries: %w", err)
		}
		if resp.GetTreeSize() != p.size {
			return nil, false, fmt.Errorf("%w: entries proven in a tree of %d entries, asked for %d", client.ErrAuditProof, resp.GetTreeSize(), p.size)
		}
		p.page = resp.GetRecords()
		reached := p.size
		switch next := resp.GetNextPageToken(); {
		case next == "":
			p.done = true
		case p.seen[next]:
			return nil, false, fmt.Errorf("the server repeated page token %q", next)
		default:
			p.seen[next] = true
			p.req.PageToken = next
			if n, err := strconv.ParseUint(next, 10, 64); err == nil && n <= p.size {
				reached = n // the registry's tokens are the position to go on from
			} else if len(p.page) > 0 {
				reached = p.page[len(p.page)-1].GetSequence() + 1
			}
		}
		if p.progress != nil {
			p.progress(int(reached), int(p.size))
		}
	}
	rec := p.page[0]
	p.page = p.page[1:]
	return rec, true, nil
}
