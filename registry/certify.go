package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/consensus"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	peerv1 "github.com/trustfed/trustfed/proto/trustfed/peer/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
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
// event (nil for events that are not decisions).
func (s *Server) certifyBatch(ctx context.Context, index uint64, evs []*commandv1.AuditEvent) ([]*trustfedv1.DecisionCertificate, error) {
	var stmts [][]byte
	pos := make([]int, len(evs))
	for i, ev := range evs {
		pos[i] = -1
		d := ev.GetDecision()
		if d == nil {
			continue
		}
		pos[i] = len(stmts)
		stmts = append(stmts, d.Statement)
	}
	if len(stmts) == 0 {
		return make([]*trustfedv1.DecisionCertificate, len(evs)), nil
	}
	tree := attestation.NewBatchTree(stmts)
	root := tree.Root()
	head, err := attestation.MarshalBatchHead(&trustfedv1.DecisionBatchHead{Origin: s.cfg.AuditOrigin, LogIndex: index, Size: tree.Size(), Root: root})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "%v: %v", errNotCertified, err)
	}
	r := s.store.Read()
	need := quorumAt(r, s.clock())
	if need == 0 {
		return nil, status.Errorf(codes.Unavailable, "%v: no node holds an endorsed key valid now: trustfed key endorse %s --from-node ADDR", errNotCertified, s.cfg.NodeID)
	}
	sigs, err := s.gatherSignatures(ctx, r, index, root, head, need)
	if err != nil {
		s.metrics.certified(false)
		return nil, err
	}
	s.metrics.certified(true)
	out := make([]*trustfedv1.DecisionCertificate, len(evs))
	for i, p := range pos {
		if p < 0 {
			continue
		}
		out[i] = &trustfedv1.DecisionCertificate{BatchHead: head, LeafIndex: uint64(p), InclusionProof: tree.Proof(uint64(p)), Signatures: sigs}
	}
	return out, nil
}

// signatureAnswer is one node's answer to a cosigning request.
type signatureAnswer struct {
	node string
	sig  *trustfedv1.BatchSignature
	err  error
}

// gatherSignatures asks this node's cosigner and every other server of the
// configuration for its signature over head, and returns as soon as need
// distinct nodes signed it with an endorsed key.
func (s *Server) gatherSignatures(ctx context.Context, r *state.Reader, index uint64, root, head []byte, need int) ([]*trustfedv1.BatchSignature, error) {
	ctx, cancel := context.WithTimeout(ctx, certifyTimeout)
	servers := s.peerServers(ctx)
	answers := make(chan signatureAnswer, len(servers)+1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // stop the calls still out before waiting for them
	wg.Go(func() {
		res, err := s.cfg.Cosigner.Result(ctx, index)
		answers <- s.checkAnswer(r, s.cfg.NodeID, res, err, root, head)
	})
	asked := 1
	for _, srv := range servers {
		if srv.ID == s.cfg.NodeID || srv.APIAddr == "" {
			continue
		}
		asked++
		wg.Go(func() {
			res, err := s.askCosign(ctx, srv, index, root)
			answers <- s.checkAnswer(r, srv.ID, res, err, root, head)
		})
	}
	var sigs []*trustfedv1.BatchSignature
	var problems []string
	for range asked {
		a := <-answers
		if a.err != nil {
			problems = append(problems, a.err.Error())
			continue
		}
		sigs = append(sigs, a.sig)
		if len(sigs) >= need {
			return sigs, nil
		}
	}
	return nil, status.Errorf(codes.Unavailable, "%v: the batch at index %d has %d of the %d node signatures it needs (%s): retry",
		errNotCertified, index, len(sigs), need, strings.Join(problems, "; "))
}

// checkAnswer keeps a node's signature only if it is over the head this
// node computed, by a key endorsed for that node. This node's own
// signature, made a moment ago by its own signer, is not verified again.
func (s *Server) checkAnswer(r *state.Reader, node string, res *cosignResult, err error, root, head []byte) signatureAnswer {
	a := signatureAnswer{node: node}
	switch {
	case err != nil:
		a.err = fmt.Errorf("node %s: %w", node, err)
	case res.sig == nil:
		a.err = res.err
	case !bytes.Equal(res.root, root) || !bytes.Equal(res.head, head):
		a.err = fmt.Errorf("node %s computed root %x for the batch, this node %x", node, res.root, root)
	case res.sig.NodeId != node:
		a.err = fmt.Errorf("node %s answered for node %q", node, res.sig.NodeId)
	default:
		k, ok := r.NodeKey(res.sig.KeyId)
		if !ok || k.NodeId != node {
			a.err = fmt.Errorf("node %s signed with key %s, which is not endorsed for it", node, res.sig.KeyId)
		} else if verr := s.verifyPeer(node, k.PublicKey, head, res.sig.Signature); verr != nil {
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
	var h trustfedv1.DecisionBatchHead
	if err := proto.Unmarshal(resp.BatchHead, &h); err != nil {
		return nil, fmt.Errorf("its batch head does not parse: %w", err)
	}
	return &cosignResult{head: resp.BatchHead, root: h.Root, sig: resp.Signature}, nil
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
