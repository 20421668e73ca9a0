package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/consensus"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	peerv1 "github.com/trustfed/trustfed/proto/trustfed/peer/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/decision"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Collecting a batch's certificate (see cosign.go for what each node
// checks before it signs). The node whose checks a batch holds asks every
// server of the configuration for its signature in parallel (itself
// through its own cosigner) right after the batch commits, and answers its
// checks as soon as a quorum of distinct nodes signed the head it computed
// itself: one round per batch, however many decisions it holds.
const (
	// certifyTimeout bounds the wait for a quorum of signatures.
	certifyTimeout = 5 * time.Second
	// serversTTL: how long the configuration's server list is reused.
	serversTTL = time.Second
)

// errNotCertified: the batch holding the decision did not gather a quorum
// of node signatures; the check is not answered (UNAVAILABLE: retry).
var errNotCertified = errors.New("the decision was not certified by a quorum of registry nodes")

// certifies reports whether decisions read from r are quorum-certified:
// they are audited, and the cluster signs with endorsed node keys.
func (s *Server) certifies(r *state.Reader) bool {
	return s.cfg.Cosigner != nil && s.auditsDecisions() && r.NodeKeysInForce()
}

// quorumAt is a majority of the nodes holding a node key valid at t, the
// count verifiers derive from GET /v1/keys (attestation.Quorum).
func quorumAt(r *state.Reader, t time.Time) int {
	q, _ := attestation.CheckpointQuorum(r.NodeKeysForVerify(), t)
	return q
}

// certifyBatch gathers the certificates of the decisions among evs, which
// were committed at Raft index index. The result holds one certificate per
// event (nil for events that are not decisions, and for decisions the
// signers refused: the error is then a *decisionsRefused saying why, and
// the other decisions' certificates are still returned).
func (s *Server) certifyBatch(ctx context.Context, index uint64, evs []*commandv1.AuditEvent) ([]*trustfedv1.DecisionCertificate, error) {
	var stmts [][]byte
	for _, ev := range evs {
		if d := ev.GetDecision(); d != nil {
			stmts = append(stmts, d.Statement)
		}
	}
	if len(stmts) == 0 {
		return make([]*trustfedv1.DecisionCertificate, len(evs)), nil
	}
	return s.certifyLeaves(ctx, index, s.cfg.Cosigner.batchTree(index, stmts), stmts, 0, evs)
}

// certifyCommitted is certifyBatch for a batch committed as c: when the
// leader merged it into an entry with other servers' batches, its
// decisions are leaves c.leafOffset... of the entry's batch head, whose
// statements and tree this node takes from its own cosigner's evaluation
// of the entry (the one it applied), never from the leader's word: each
// of its statements must be the entry's leaf the leader said it is.
func (s *Server) certifyCommitted(ctx context.Context, c auditCommit, evs []*commandv1.AuditEvent) ([]*trustfedv1.DecisionCertificate, error) {
	if !c.merged {
		return s.certifyBatch(ctx, c.index, evs)
	}
	wctx, cancel := context.WithTimeout(ctx, certifyTimeout)
	own, err := s.cfg.Cosigner.Result(wctx, c.index)
	cancel()
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "%v: %v: retry", errNotCertified, err)
	}
	if own.tree == nil {
		return nil, status.Errorf(codes.Unavailable, "%v: node %s did not evaluate the batch at index %d: retry", errNotCertified, s.cfg.NodeID, c.index)
	}
	leaf := c.leafOffset
	for _, ev := range evs {
		d := ev.GetDecision()
		if d == nil {
			continue
		}
		if leaf >= uint64(len(own.raw)) || !bytes.Equal(own.raw[leaf], d.Statement) {
			return nil, status.Errorf(codes.Unavailable, "%v: the batch at index %d does not hold this node's decision as leaf %d, as the leader said: retry", errNotCertified, c.index, leaf)
		}
		leaf++
	}
	if len(c.head) > 0 {
		r := s.store.Read()
		if q, ok := s.adoptQuorum(r, own, c.head, c.sigs, quorumAt(r, s.clock())); ok {
			s.metrics.certified(true)
			return certificates(q, c.index, own.tree, own.raw, c.leafOffset, evs)
		}
	}
	return s.certifyLeaves(ctx, c.index, own.tree, own.raw, c.leafOffset, evs)
}

// adoptQuorum takes the quorum the leader gathered over a merged entry
// (head, sigs) only if head is the one this node's own replica computed
// and signed for it (own) and, with this node's own signature, need
// distinct nodes signed it with keys endorsed for them: the certificate is
// then one over this node's own head, as if it had gathered it.
func (s *Server) adoptQuorum(r *state.Reader, own *cosignResult, head []byte, sigs []*trustfedv1.BatchSignature, need int) (*batchQuorum, bool) {
	if need == 0 || own.head == nil || own.sig == nil || !bytes.Equal(own.head, head) {
		return nil, false
	}
	if k, ok := r.NodeKey(own.sig.KeyId); !ok || k.NodeId != s.cfg.NodeID {
		return nil, false
	}
	out := []*trustfedv1.BatchSignature{own.sig}
	seen := map[string]bool{s.cfg.NodeID: true}
	for _, sig := range sigs {
		if len(out) >= need {
			break
		}
		if seen[sig.GetNodeId()] {
			continue
		}
		k, ok := r.NodeKey(sig.KeyId)
		if !ok || k.NodeId != sig.NodeId || attestation.Verify(k.PublicKey, attestation.PurposeDecisionBatch, head, sig.Signature) != nil {
			continue
		}
		seen[sig.NodeId] = true
		out = append(out, sig)
	}
	if len(out) < need {
		return nil, false
	}
	var h trustfedv1.DecisionBatchHead
	if proto.Unmarshal(head, &h) != nil {
		return nil, false
	}
	return &batchQuorum{head: own.head, refused: h.Refused, why: own.why, sigs: out}, true
}

// certifyLeaves gathers the certificates of the decisions among evs,
// leaves offset... of tree (over stmts), the batch committed at index.
func (s *Server) certifyLeaves(ctx context.Context, index uint64, tree *attestation.BatchTree, stmts [][]byte, offset uint64, evs []*commandv1.AuditEvent) ([]*trustfedv1.DecisionCertificate, error) {
	batch := &trustfedv1.DecisionBatchHead{Origin: s.cfg.AuditOrigin, LogIndex: index, Size: tree.Size(), Root: tree.Root()}
	r := s.store.Read()
	need := quorumAt(r, s.clock())
	if need == 0 {
		return nil, status.Errorf(codes.Unavailable, "%v: no node holds an endorsed key valid now: trustfed key endorse %s --from-node ADDR", errNotCertified, s.cfg.NodeID)
	}
	q, err := s.gatherSignatures(ctx, r, batch, need)
	if err != nil {
		s.metrics.certified(false)
		return nil, err
	}
	s.metrics.certified(true)
	return certificates(q, index, tree, stmts, offset, evs)
}

// certificates are the certificates quorum q gives the decisions among
// evs, leaves offset... of tree (over stmts), the batch at index; the
// refused ones get none, and a *decisionsRefused says why.
func certificates(q *batchQuorum, index uint64, tree *attestation.BatchTree, stmts [][]byte, offset uint64, evs []*commandv1.AuditEvent) ([]*trustfedv1.DecisionCertificate, error) {
	pos := make([]int, len(evs))
	next := int(offset)
	for i, ev := range evs {
		pos[i] = -1
		if ev.GetDecision() != nil {
			pos[i] = next
			next++
		}
	}
	out := make([]*trustfedv1.DecisionCertificate, len(evs))
	var refused *decisionsRefused
	for i, p := range pos {
		if p < 0 {
			continue
		}
		leaf := uint64(p)
		if _, no := slices.BinarySearch(q.refused, leaf); no {
			if refused == nil {
				refused = &decisionsRefused{index: index, leaves: map[string]uint64{}, why: q.why}
			}
			refused.leaves[string(stmts[p])] = leaf
			continue
		}
		out[i] = &trustfedv1.DecisionCertificate{BatchHead: q.head, LeafIndex: leaf, InclusionProof: tree.Proof(leaf), Signatures: q.sigs}
	}
	if refused != nil {
		return out, refused
	}
	return out, nil
}

// decisionsRefused: a quorum vouched for a batch but not for the decisions
// its head lists refused; their callers are not answered (certifyBatch).
type decisionsRefused struct {
	index  uint64
	leaves map[string]uint64 // refused statement → its leaf
	why    map[uint64]error  // this node's reason per leaf (nil: not known)
}

func (e *decisionsRefused) Error() string {
	return fmt.Sprintf("%v: %d of the decisions of the batch at index %d were refused by the signers", errNotCertified, len(e.leaves), e.index)
}

// reason is why the decision statement was not certified: UNAVAILABLE with
// the signers' reason, wrapped in a *staleDecision when it is that a write
// overtook it (decision.ErrStale).
func (e *decisionsRefused) reason(statement []byte) error {
	leaf, ok := e.leaves[string(statement)]
	if !ok {
		return status.Error(codes.Unavailable, errNotCertified.Error()+": retry")
	}
	why := e.why[leaf]
	if why == nil {
		why = errors.New("this node did not evaluate the batch")
	}
	err := status.Errorf(codes.Unavailable, "%v: decision %d of the batch at index %d was refused by the signers (%v): retry", errNotCertified, leaf, e.index, why)
	if errors.Is(why, decision.ErrStale) {
		return &staleDecision{err: err}
	}
	return err
}

// staleDecision: the decision was refused because a write between its read
// and its batch changed it; decided again on the new state, it may be
// certified (CheckInteraction does so once).
type staleDecision struct{ err error }

func (e *staleDecision) Error() string { return e.err.Error() }
func (e *staleDecision) Unwrap() error { return e.err }

// isStale: err is or wraps a *staleDecision. (Only called with an error:
// errors.As moves its target to the heap.)
func isStale(err error) bool {
	var stale *staleDecision
	return errors.As(err, &stale)
}

// batchQuorum is a head of a batch that a quorum of nodes signed.
type batchQuorum struct {
	head    []byte
	refused []uint64
	why     map[uint64]error // this node's reasons (nil: not its own head)
	sigs    []*trustfedv1.BatchSignature
}

// signatureAnswer is one node's answer to a cosigning request.
type signatureAnswer struct {
	node string
	head []byte // the head it evaluated (nil: none, or another batch)
	// refused is the head's refused leaves; why, this node's reasons (own
	// answer only).
	refused []uint64
	why     map[uint64]error
	sig     *trustfedv1.BatchSignature // nil: it did not sign head
	err     error
}

// headVotes are the signatures over one head.
type headVotes struct {
	refused []uint64
	nodes   []string
	sigs    []*trustfedv1.BatchSignature
}

// gatherSignatures asks this node's cosigner and every other server of the
// configuration for its signed verdict on the batch, and returns as soon
// as need distinct nodes signed, with an endorsed key, the head this node
// computed itself (its own refused leaves included): a node that signed
// another head disagrees and does not count. Only when this node could not
// evaluate the batch (a node-local reason) does it take a head of the same
// batch that a quorum of the others signed.
func (s *Server) gatherSignatures(ctx context.Context, r *state.Reader, batch *trustfedv1.DecisionBatchHead, need int) (*batchQuorum, error) {
	ctx, cancel := context.WithTimeout(ctx, certifyTimeout)
	servers := s.peerServers(ctx)
	// The answers are checked (a peer's signature verified) here, one at
	// a time, and only until a quorum is in: a signature that comes after
	// it costs no verification.
	type rawAnswer struct {
		node string
		res  *cosignResult
		err  error
	}
	answers := make(chan rawAnswer, len(servers)+1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // stop the calls still out before waiting for them
	index := batch.LogIndex
	wg.Go(func() {
		res, err := s.cfg.Cosigner.Result(ctx, index)
		answers <- rawAnswer{s.cfg.NodeID, res, err}
	})
	asked := 1
	for _, srv := range servers {
		if srv.ID == s.cfg.NodeID || srv.APIAddr == "" {
			continue
		}
		asked++
		wg.Go(func() {
			res, err := s.askCosign(ctx, srv, index, batch.Root)
			answers <- rawAnswer{srv.ID, res, err}
		})
	}
	var own *signatureAnswer
	votes := map[string]*headVotes{}
	var problems []string
	for range asked {
		raw := <-answers
		a := s.checkAnswer(r, raw.node, raw.res, raw.err, batch)
		if a.node == s.cfg.NodeID {
			own = &a
		}
		if a.err != nil {
			problems = append(problems, a.err.Error())
		} else {
			v := votes[string(a.head)]
			if v == nil {
				v = &headVotes{refused: a.refused}
				votes[string(a.head)] = v
			}
			v.nodes, v.sigs = append(v.nodes, a.node), append(v.sigs, a.sig)
		}
		if q := quorumOver(own, votes, need); q != nil {
			return q, nil
		}
	}
	if own != nil && own.head != nil {
		for head, v := range votes {
			if head != string(own.head) {
				slices.Sort(v.nodes)
				problems = append(problems, fmt.Sprintf("nodes %s vouch for other decisions of the batch (refused %v, this node %v)", strings.Join(v.nodes, ", "), v.refused, own.refused))
			}
		}
	}
	got := 0
	if own != nil && own.head != nil && votes[string(own.head)] != nil {
		got = len(votes[string(own.head)].sigs)
	}
	return nil, status.Errorf(codes.Unavailable, "%v: the batch at index %d has %d of the %d node signatures it needs (%s): retry",
		errNotCertified, index, got, need, strings.Join(problems, "; "))
}

// quorumOver is the head of the batch that need nodes signed and that
// counts: the one this node computed (own), or, when this node could not
// evaluate the batch, any head of it; nil while there is none, or while
// this node's own answer (nil) is not in.
func quorumOver(own *signatureAnswer, votes map[string]*headVotes, need int) *batchQuorum {
	if own == nil {
		return nil // its own head decides which signatures count
	}
	for head, v := range votes {
		if len(v.sigs) < need || (own.head != nil && head != string(own.head)) {
			continue
		}
		q := &batchQuorum{head: []byte(head), refused: v.refused, sigs: v.sigs}
		if own.head != nil {
			q.why = own.why
		}
		return q
	}
	return nil
}

// checkAnswer keeps a node's signature only if it is over its head of the
// batch (origin, index, size and root those of batch; any batch when nil),
// by a key endorsed for that node. This node's own signature, made a
// moment ago by its own signer, is not verified again.
func (s *Server) checkAnswer(r *state.Reader, node string, res *cosignResult, err error, batch *trustfedv1.DecisionBatchHead) signatureAnswer {
	a := signatureAnswer{node: node}
	if err != nil {
		a.err = fmt.Errorf("node %s: %w", node, err)
		return a
	}
	if res.head == nil {
		a.err = res.err
		return a
	}
	var h trustfedv1.DecisionBatchHead
	if perr := proto.Unmarshal(res.head, &h); perr != nil {
		a.err = fmt.Errorf("node %s: its batch head does not parse: %w", node, perr)
		return a
	}
	if batch != nil && (h.Origin != batch.Origin || h.LogIndex != batch.LogIndex || h.Size != batch.Size || !bytes.Equal(h.Root, batch.Root)) {
		a.err = fmt.Errorf("node %s computed root %x for the batch, this node %x", node, h.Root, batch.Root)
		return a
	}
	a.head, a.refused, a.why = res.head, h.Refused, res.why
	switch {
	case res.sig == nil:
		a.err = res.err
	case res.sig.NodeId != node:
		a.err = fmt.Errorf("node %s answered for node %q", node, res.sig.NodeId)
	default:
		k, ok := r.NodeKey(res.sig.KeyId)
		if !ok || k.NodeId != node {
			a.err = fmt.Errorf("node %s signed with key %s, which is not endorsed for it", node, res.sig.KeyId)
		} else if verr := s.verifyPeer(node, k.PublicKey, res.head, res.sig.Signature); verr != nil {
			a.err = fmt.Errorf("node %s: %w", node, verr)
		} else {
			a.sig = res.sig
		}
	}
	return a
}

// verifyPeer checks another node's signature over a batch head.
func (s *Server) verifyPeer(node string, pub, head, sig []byte) error {
	if node == s.cfg.NodeID {
		return nil
	}
	return attestation.Verify(pub, attestation.PurposeDecisionBatch, head, sig)
}

// askCosign is the CosignBatch call to one peer.
func (s *Server) askCosign(ctx context.Context, srv consensus.Server, index uint64, root []byte) (*cosignResult, error) {
	c, err := s.cfg.Peers.conn(srv.APIAddr)
	if err != nil {
		return nil, err
	}
	resp, err := peerv1.NewPeerServiceClient(c).CosignBatch(ctx, &peerv1.CosignBatchRequest{LogIndex: index, Root: root})
	if err != nil {
		if st, ok := status.FromError(err); ok {
			return nil, errors.New(st.Message())
		}
		return nil, err
	}
	if len(resp.BatchHead) == 0 {
		return nil, errors.New("it sent no batch head")
	}
	return &cosignResult{head: resp.BatchHead, sig: resp.Signature}, nil
}

// peerServers is the configuration's servers, refreshed every serversTTL.
func (s *Server) peerServers(ctx context.Context) []consensus.Server {
	s.serversMu.Lock()
	defer s.serversMu.Unlock()
	if time.Since(s.serversAt) < serversTTL && s.servers != nil {
		return s.servers
	}
	srvs, err := s.raft.Servers(ctx)
	if err != nil {
		s.log.Warn("cosigning: cannot read the cluster configuration; using the last one", "error", err)
		return s.servers
	}
	s.servers, s.serversAt = srvs, time.Now()
	return srvs
}

// CosignBatch answers a peer's request for this node's signature over a
// decision batch (cosign.go).
func (s *peerService) CosignBatch(ctx context.Context, req *peerv1.CosignBatchRequest) (*peerv1.CosignBatchResponse, error) {
	if req.GetLogIndex() == 0 {
		return nil, status.Error(codes.InvalidArgument, "log_index is required")
	}
	if s.cfg.Cosigner == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "node %s does not cosign decision batches", s.cfg.NodeID)
	}
	res, err := s.cfg.Cosigner.Result(ctx, req.LogIndex)
	if err != nil {
		return nil, status.Error(codes.DeadlineExceeded, err.Error())
	}
	if res.sig == nil {
		return nil, status.Error(codes.FailedPrecondition, res.err.Error())
	}
	if len(req.Root) > 0 && !bytes.Equal(res.root, req.Root) {
		return nil, status.Errorf(codes.FailedPrecondition, "node %s holds a different batch at index %d (root %x, asked %x)", s.cfg.NodeID, req.LogIndex, res.root, req.Root)
	}
	return &peerv1.CosignBatchResponse{BatchHead: res.head, Signature: res.sig}, nil
}
