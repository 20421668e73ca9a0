package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/trustfed/trustfed/consensus"
	peerv1 "github.com/trustfed/trustfed/proto/trustfed/peer/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// forwardedHeader marks a request a follower forwarded to the leader; a
// forwarded request is never forwarded again (no loops during elections).
const forwardedHeader = "x-trustfed-forwarded-by"

// forwardedForHeader carries the principal a forwarded request was made by
// when it authenticated with a certificate: "node:<id>" or
// "member:<org>/<node>" (people are forwarded with their own bearer token).
// The leader accepts it only from a registry server's certificate and
// checks a member against its own state again.
const forwardedForHeader = "x-trustfed-forwarded-for"

// forwardTimeout bounds a write forwarded to the leader for a caller that
// set no deadline. (A follower's audit batches and read-index calls are
// bounded by consensus.Node.LeaderCall instead.)
const forwardTimeout = 30 * time.Second

// Peers holds connections to other registry servers (mutual TLS with this
// node's certificate). It is how a follower forwards writes to the leader
// and asks it for a read index.
type Peers struct {
	tls *tls.Config

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// NewPeers returns a connection pool using tlsConfig (which must present this
// node's certificate and trust the cluster CA).
func NewPeers(tlsConfig *tls.Config) *Peers {
	return &Peers{tls: tlsConfig, conns: map[string]*grpc.ClientConn{}}
}

func (p *Peers) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(p.tls)))
	if err != nil {
		return nil, fmt.Errorf("connect to peer %s: %w", addr, err)
	}
	p.conns[addr] = c
	return c, nil
}

// ReadIndex asks the leader at leaderAPIAddr for a read index
// (consensus.LeaderClient).
func (p *Peers) ReadIndex(ctx context.Context, leaderAPIAddr string) (uint64, error) {
	c, err := p.conn(leaderAPIAddr)
	if err != nil {
		return 0, err
	}
	resp, err := peerv1.NewPeerServiceClient(c).ReadIndex(ctx, &peerv1.ReadIndexRequest{})
	if err != nil {
		return 0, fmt.Errorf("read index from leader %s: %w", leaderAPIAddr, err)
	}
	return resp.Index, nil
}

// Progress asks the server at apiAddr how far it has applied the log
// (consensus.ProgressClient: the leader, before promoting a non-voter).
func (p *Peers) Progress(ctx context.Context, apiAddr string) (consensus.Progress, error) {
	c, err := p.conn(apiAddr)
	if err != nil {
		return consensus.Progress{}, err
	}
	resp, err := peerv1.NewPeerServiceClient(c).Progress(ctx, &peerv1.ProgressRequest{})
	if err != nil {
		return consensus.Progress{}, fmt.Errorf("progress of %s: %w", apiAddr, err)
	}
	out := consensus.Progress{NodeID: resp.NodeId, Term: resp.Term, AppliedIndex: resp.AppliedIndex}
	if resp.Time != nil {
		out.Time = resp.Time.AsTime()
	}
	return out, nil
}

// Close closes every peer connection.
func (p *Peers) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, c := range p.conns {
		_ = c.Close()
		delete(p.conns, addr)
	}
	return nil
}

// writeMethods are the methods that change state: every method of our
// services not marked idempotency_level = NO_SIDE_EFFECTS in the proto.
var writeMethods = func() map[string]bool {
	out := map[string]bool{}
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if pkg := string(fd.Package()); pkg != "trustfed.v1" && pkg != "trustfed.peer.v1" {
			return true
		}
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			for j := 0; j < sd.Methods().Len(); j++ {
				md := sd.Methods().Get(j)
				if !isNoSideEffects(md) {
					out[fmt.Sprintf("/%s/%s", sd.FullName(), md.Name())] = true
				}
			}
		}
		return true
	})
	return out
}()

// consumesAuthorization: a check that presents a dual authorisation may
// take one of its uses (a write only the leader can propose), so it is
// answered by the leader, like a write; so is a batch with such a check.
func consumesAuthorization(method string, req any) bool {
	switch r := req.(type) {
	case *trustfedv1.CheckInteractionRequest:
		return method == trustfedv1.RegistryService_CheckInteraction_FullMethodName && r.GetAuthorizationId() != ""
	case *trustfedv1.CheckInteractionsRequest:
		return method == trustfedv1.RegistryService_CheckInteractions_FullMethodName &&
			slices.ContainsFunc(r.GetChecks(), func(c *trustfedv1.CheckInteractionRequest) bool { return c.GetAuthorizationId() != "" })
	}
	return false
}

func isNoSideEffects(md protoreflect.MethodDescriptor) bool {
	opts, ok := md.Options().(*descriptorpb.MethodOptions)
	return ok && opts.GetIdempotencyLevel() == descriptorpb.MethodOptions_NO_SIDE_EFFECTS
}

// forward sends a write that reached a follower to the leader, with the
// caller's credentials, and returns the leader's answer.
func (s *Server) forward(ctx context.Context, method string, req any) (any, bool, error) {
	if !(writeMethods[method] || consumesAuthorization(method, req)) || s.raft.IsLeader() {
		return nil, false, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if len(md.Get(forwardedHeader)) > 0 {
		return nil, true, status.Error(codes.Unavailable, "not the leader (request was already forwarded once): retry shortly")
	}
	leader, ok := s.raft.Leader()
	if !ok || leader.APIAddr == "" || leader.ID == s.cfg.NodeID {
		return nil, true, status.Error(codes.Unavailable, "no leader known right now: retry shortly")
	}
	resp, err := newResponse(method)
	if err != nil {
		return nil, true, err
	}
	out := metadata.MD{forwardedHeader: []string{s.cfg.NodeID}}
	if auth := md.Get("authorization"); len(auth) > 0 {
		out.Set("authorization", auth...)
	} else if p, ok := PrincipalFrom(ctx); ok && (p.Role == RoleNode || p.Role == RoleMember) {
		out.Set(forwardedForHeader, p.ID)
	}
	conn, err := s.cfg.Peers.conn(leader.APIAddr)
	if err != nil {
		return nil, true, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, forwardTimeout)
		defer cancel()
	}
	// Abandoned as soon as the leader changes: a leader cut off by a
	// partition never answers, and the caller can retry with the new one.
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	changed := s.raft.LeaderChanged(leader.ID)
	go func() { // ends with cctx
		select {
		case <-changed:
			cancel(fmt.Errorf("%w while forwarding to %s", consensus.ErrLeaderChanged, leader.ID))
		case <-cctx.Done():
		}
	}()
	if err := conn.Invoke(metadata.NewOutgoingContext(cctx, out), method, req, resp); err != nil {
		if errors.Is(context.Cause(cctx), consensus.ErrLeaderChanged) && ctx.Err() == nil {
			if method == trustfedv1.ClusterService_TransferLeadership_FullMethodName {
				// What was asked: the leader stepped down.
				return s.transferred(), true, nil
			}
			return nil, true, status.Error(codes.Unavailable, "the leader changed while the write was forwarded to it: it may or may not have been applied; retry (with the same request_id where the method takes one)")
		}
		return nil, true, err // already a status from the leader
	}
	return resp, true, nil
}

// newResponse makes an empty response message for a full method name.
func newResponse(method string) (proto.Message, error) {
	md, err := methodDescriptor(method)
	if err != nil {
		return nil, err
	}
	return newMessage(md.Output().FullName())
}

// methodDescriptor finds a full method name ("/pkg.Service/Method").
func methodDescriptor(method string) (protoreflect.MethodDescriptor, error) {
	svc, name, ok := splitMethod(method)
	if !ok {
		return nil, fmt.Errorf("bad method name %q", method)
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return nil, fmt.Errorf("find service %s: %w", svc, err)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is not a service", svc)
	}
	md := sd.Methods().ByName(protoreflect.Name(name))
	if md == nil {
		return nil, fmt.Errorf("no method %s in %s", name, svc)
	}
	return md, nil
}

func newMessage(name protoreflect.FullName) (proto.Message, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(name)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", name, err)
	}
	return mt.New().Interface(), nil
}

func splitMethod(full string) (svc, name string, ok bool) {
	if len(full) < 3 || full[0] != '/' {
		return "", "", false
	}
	for i := len(full) - 1; i > 0; i-- {
		if full[i] == '/' {
			return full[1:i], full[i+1:], true
		}
	}
	return "", "", false
}
