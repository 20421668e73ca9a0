package registry

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/faultinject"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/decision"
	"github.com/trustfed/trustfed/registry/state"
)

// Quorum-certified decisions (AG-783 Scenario C): a decision is answered
// only once a quorum of registry nodes vouches for it. Every replica hands
// each decision batch it applies to its Cosigner, which re-evaluates every
// decision on the replica's own state (decision.VouchBatch) and signs the
// batch's head (origin, Raft index, size, Merkle root over the statements,
// and the leaves it refuses) with the node's own endorsed key: one
// signature per node per batch. A decision refused for a reason every
// honest replica shares (it does not re-derive, a later write overtook it,
// it is malformed) is listed in the head's refused leaves, and the rest of
// the batch is still vouched for; a node-local reason (the state it needs
// is no longer kept here, no signing key, a full queue) refuses the whole
// batch. A head that lists every decision refused is signed too: it is
// this node's verdict, which dissent.go compares with the quorum's. The
// answering node collects the signatures (certify.go).
const (
	// cosignKeep is how many batch results a node keeps for its peers to
	// ask for.
	cosignKeep = 4096
	// cosignQueue bounds batches waiting to be evaluated; a batch that
	// finds it full is not vouched for (its checks are retried).
	cosignQueue = 4096
	// staleBatch: batches older than this when applied (a node catching
	// up) are not evaluated: nobody waits for them any more.
	staleBatch = time.Minute
)

// Cosigner evaluates and signs this replica's decision batches; Run owns
// its goroutine.
type Cosigner struct {
	nodeID, origin string
	keys           attestation.Keyring // nil: this node signs nothing
	state          *state.Store
	log            *slog.Logger
	clock          func() time.Time
	queue          chan state.DecisionBatch

	mu      sync.Mutex
	results map[uint64]*cosignResult
	order   []uint64 // FIFO of results' indexes, for eviction
	notify  chan struct{}
	// trees are the Merkle trees of the batches queued and not evaluated
	// yet, made once for the evaluation and this node's certification of
	// the batch (batchTree), whichever needs one first.
	trees map[uint64]*sharedTree

	refused atomic.Uint64 // batches this node did not vouch for
	signed  atomic.Uint64
	// dissents are the indexes of batches this node refused because a
	// decision did not re-derive on its state (see Server.checkDissent).
	dissents chan uint64

	// own holds the statements this node decided itself and has not seen
	// in a batch yet (Decided), at most cosignOwnKeep, oldest dropped
	// first: VouchOwn need not evaluate them again.
	ownMu    sync.Mutex
	own      map[string]struct{}
	ownOrder []string
}

// cosignOwnKeep bounds the statements a node remembers having decided
// (more than the decisions it has in flight: one dropped is only
// evaluated again).
const cosignOwnKeep = 16384

// Decided records that this node decided statement itself, on its own
// state at the statement's index (signDecision), so that its cosigner
// does not evaluate it again when it comes back in a batch
// (decision.VouchOwn).
func (c *Cosigner) Decided(statement []byte) {
	k := string(statement)
	c.ownMu.Lock()
	defer c.ownMu.Unlock()
	c.own[k] = struct{}{}
	c.ownOrder = append(c.ownOrder, k)
	for len(c.ownOrder) > cosignOwnKeep {
		delete(c.own, c.ownOrder[0])
		c.ownOrder = c.ownOrder[1:]
	}
}

// ownStatements are the statements of b this node decided itself (each
// forgotten once seen).
func (c *Cosigner) ownStatements(b state.DecisionBatch) map[*trustfedv1.DecisionStatement]bool {
	c.ownMu.Lock()
	defer c.ownMu.Unlock()
	var out map[*trustfedv1.DecisionStatement]bool
	for i, raw := range b.Raw {
		if _, ok := c.own[string(raw)]; !ok || b.Statements[i] == nil {
			continue
		}
		delete(c.own, string(raw))
		if out == nil {
			out = map[*trustfedv1.DecisionStatement]bool{}
		}
		out[b.Statements[i]] = true
	}
	return out
}

// cosignResult is what this node concluded about one batch.
type cosignResult struct {
	head []byte // the serialized DecisionBatchHead; nil when not evaluated
	root []byte
	sig  *trustfedv1.BatchSignature // nil when it vouches for nothing
	err  error                      // why it vouches for nothing
	// why holds the reason for each leaf the head lists refused (set only
	// on this node's own results).
	why map[uint64]error
	// raw and tree are the batch's statements and their Merkle tree (own
	// results only): a follower whose batch the leader merged into the
	// entry certifies its decisions with them (certifyCommitted).
	raw  [][]byte
	tree *attestation.BatchTree
}

// NewCosigner returns the cosigner of node nodeID for the audit log named
// origin. keys may be nil (the node then vouches for nothing).
func NewCosigner(nodeID, origin string, keys attestation.Keyring, store *state.Store, log *slog.Logger) *Cosigner {
	if log == nil {
		log = slog.Default()
	}
	return &Cosigner{
		nodeID: nodeID, origin: origin, keys: keys, state: store, log: log, clock: faultinject.Now,
		queue: make(chan state.DecisionBatch, cosignQueue), results: map[uint64]*cosignResult{}, notify: make(chan struct{}),
		trees: map[uint64]*sharedTree{}, dissents: make(chan uint64, 64), own: map[string]struct{}{},
	}
}

// Enqueue is the FSM's OnDecisionBatch: it must not block.
func (c *Cosigner) Enqueue(b state.DecisionBatch) {
	if c.clock().Sub(b.Time) > staleBatch {
		return
	}
	t := &sharedTree{raw: b.Raw, tree: sync.OnceValue(func() *attestation.BatchTree { return attestation.NewBatchTree(b.Raw) })}
	c.mu.Lock()
	c.trees[b.Index] = t
	c.mu.Unlock()
	select {
	case c.queue <- b:
	default:
		c.record(b.Index, &cosignResult{err: fmt.Errorf("node %s did not evaluate the batch at index %d: its cosigning queue is full", c.nodeID, b.Index),
			raw: b.Raw, tree: t.tree()})
	}
}

// sharedTree is a queued batch's statements and their Merkle tree, made
// on first use.
type sharedTree struct {
	raw  [][]byte
	tree func() *attestation.BatchTree
}

// batchTree is attestation.NewBatchTree(raw), the statements of the batch
// at index, taken from this cosigner's evaluation of that batch when it
// holds the same statements (it always does on the node whose batch it
// is), so that the tree is made once per batch, not once to evaluate it
// and again to certify it. c may be nil.
func (c *Cosigner) batchTree(index uint64, raw [][]byte) *attestation.BatchTree {
	if c != nil {
		c.mu.Lock()
		t := c.trees[index]
		if t == nil {
			if r := c.results[index]; r != nil && r.tree != nil {
				t = &sharedTree{raw: r.raw, tree: func() *attestation.BatchTree { return r.tree }}
			}
		}
		c.mu.Unlock()
		if t != nil && slices.EqualFunc(t.raw, raw, bytes.Equal) {
			return t.tree()
		}
	}
	return attestation.NewBatchTree(raw)
}

// Run evaluates queued batches until ctx ends.
func (c *Cosigner) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-c.queue:
			c.record(b.Index, c.evaluate(ctx, b))
		}
	}
}

// record records the result of the batch at index and wakes the waiters.
func (c *Cosigner) record(index uint64, r *cosignResult) {
	switch {
	case r.sig == nil:
		c.refused.Add(1)
		c.log.Warn("decision batch not vouched for", "index", index, "reason", r.err)
	case len(r.why) > 0:
		c.refused.Add(1)
		c.log.Warn("decision batch not vouched for in full", "index", index, "refused", len(r.why), "reason", firstReason(r.why))
	default:
		c.signed.Add(1)
	}
	if len(r.why) > 0 && r.head != nil {
		select {
		case c.dissents <- index:
		default: // enough to look into already
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.results[index]; !ok {
		c.order = append(c.order, index)
	}
	c.results[index] = r
	delete(c.trees, index) // r holds it now, if it was made
	for len(c.order) > cosignKeep {
		delete(c.results, c.order[0])
		c.order = c.order[1:]
	}
	close(c.notify)
	c.notify = make(chan struct{})
}

// firstReason is the reason of the lowest refused leaf, for the log.
func firstReason(why map[uint64]error) error {
	first := slices.Min(slices.Collect(maps.Keys(why)))
	return fmt.Errorf("decision %d: %w", first, why[first])
}

// Result waits until this node has evaluated the batch at index, or ctx
// ends.
func (c *Cosigner) Result(ctx context.Context, index uint64) (*cosignResult, error) {
	for {
		c.mu.Lock()
		r, ok := c.results[index]
		wake := c.notify
		c.mu.Unlock()
		if ok {
			return r, nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, fmt.Errorf("node %s has not evaluated a decision batch at index %d: %w", c.nodeID, index, ctx.Err())
		}
	}
}

// evaluate re-derives every decision of b and signs its head, which lists
// the decisions it does not vouch for.
func (c *Cosigner) evaluate(ctx context.Context, b state.DecisionBatch) *cosignResult {
	res := &cosignResult{raw: b.Raw, tree: c.batchTree(b.Index, b.Raw)}
	if err := c.checkBatchTime(b); err != nil {
		res.err = err
		return res
	}
	own := c.ownStatements(b)
	v, err := decision.VouchBatch(b, func(b state.DecisionBatch, st *trustfedv1.DecisionStatement) error {
		return vouch(b, st, own[st])
	})
	if err != nil {
		res.err = fmt.Errorf("node %s does not vouch for the batch: %w", c.nodeID, err)
		return res
	}
	if res.head, res.root, err = v.HeadOf(c.origin, b, res.tree); err != nil {
		res.head, res.err = nil, err
		return res
	}
	res.why = v.Reasons
	first, last := b.Time, b.Time // a head refusing every decision certifies none
	seen := false
	for i, st := range b.Statements {
		if !v.Vouched(uint64(i)) {
			continue
		}
		t := st.DecidedAt.AsTime()
		if !seen || t.Before(first) {
			first = t
		}
		if !seen || t.After(last) {
			last = t
		}
		seen = true
	}
	signer, keyID, err := c.signer(first, last)
	if err != nil {
		res.err = err
		return res
	}
	sig, err := signer.Sign(ctx, attestation.PurposeDecisionBatch, res.head)
	if err != nil {
		res.err = fmt.Errorf("node %s: sign the batch at index %d: %w", c.nodeID, b.Index, err)
		return res
	}
	res.sig = &trustfedv1.BatchSignature{NodeId: c.nodeID, KeyId: keyID, Signature: sig}
	return res
}

// checkBatchTime refuses a batch whose leader-stamped time is off this
// node's own clock: more than decision.MaxDecisionLead ahead of it or
// decision.MaxDecisionAge behind. Decisions are vouched for against the
// batch's time, so without this a leader whose clock jumped would get its
// own decisions certified with decided_at as far off the real time (and
// credentials checked at that time). It is node-local (each replica's own
// clock), so it refuses the whole batch: a leader with a skewed clock gets
// no decision certified, and its members fail over to another node.
func (c *Cosigner) checkBatchTime(b state.DecisionBatch) error {
	now := c.clock()
	switch {
	case b.Time.After(now.Add(decision.MaxDecisionLead)):
		return fmt.Errorf("node %s does not vouch for the batch at index %d: stamped %s, %s ahead of this node's clock (the leader's clock is off, or this node's)", c.nodeID, b.Index, fmtTime(b.Time), b.Time.Sub(now).Round(time.Millisecond))
	case b.Time.Before(now.Add(-decision.MaxDecisionAge)):
		return fmt.Errorf("node %s does not vouch for the batch at index %d: stamped %s, %s behind this node's clock (the leader's clock is off, or this node's)", c.nodeID, b.Index, fmtTime(b.Time), now.Sub(b.Time).Round(time.Millisecond))
	}
	return nil
}

// vouch checks one decision of b (decision.Vouch).
// own: this node decided st itself (decision.VouchOwn).
func vouch(b state.DecisionBatch, st *trustfedv1.DecisionStatement, own bool) error {
	if override, err := forgedVouch(); override { // only in the forging test build (forge_on.go)
		return err
	}
	if own {
		return decision.VouchOwn(b, st)
	}
	return decision.Vouch(b, st)
}

// signer is this node's key endorsed and valid over [from, to] (the
// batch's decisions' times), as the latest state says.
func (c *Cosigner) signer(from, to time.Time) (attestation.Signer, string, error) {
	if c.keys == nil {
		return nil, "", fmt.Errorf("node %s holds no signing key", c.nodeID)
	}
	r := c.state.Read()
	for _, k := range r.NodeSigningKeys(c.nodeID, from) {
		if attestation.CheckNodeKeyAt(k, to) != nil {
			continue
		}
		if s, ok := c.keys.Lookup(k.KeyId); ok {
			return s, k.KeyId, nil
		}
	}
	return nil, "", fmt.Errorf("node %s holds no key endorsed and valid from %s to %s: trustfed key endorse %s --from-node ADDR", c.nodeID, fmtTime(from), fmtTime(to), c.nodeID)
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
