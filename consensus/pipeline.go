package consensus

import (
	"errors"
	"sync"

	"github.com/hashicorp/raft"
)

// The pipeline guard. hashicorp/raft (v1.7.3) replicates to a healthy
// follower over a pipeline: one goroutine sends AppendEntries
// (pipelineReplicate), another reads the answers (pipelineDecode). The
// decoder returns at the first answer that is not a success — the follower
// could not store the entries (its disk is full), or it lacks the entry
// before them — and closes a channel that tells the sender to stop. But the
// sender picks that channel at random among the ones ready: it can send once
// more first. raft's NetworkTransport sizes the pipeline's two hand-off
// channels at MaxRPCsInFlight-2, zero with the default of 2, so that one
// more send parks on the transport's in-progress channel while the
// transport's reader parks on the answers channel nobody reads any more.
// The sender never returns, so the pipeline is never closed and the
// follower never gets another entry; its heartbeats still go out, so it
// never calls an election that would heal it. Only a new leader frees it.
//
// Seen in TestFaultsDiskFull: the former leader, whose disk had been full,
// refused one append from the new leader's pipeline and then answered no
// read for the rest of the run, 30 s after the space was back, while the
// new leader's log shows the pipeline to it started and never aborted.
//
// guardedPipeline keeps the transport's reader moving: it forwards each
// answer to raft's decoder until the first answer that ends the decoder
// (not a success, or a newer term: pipelineDecode's own tests), then drains
// and drops the rest, and refuses further sends with errPipelineEnded, so
// the sender stops and raft goes back to one AppendEntries at a time,
// from the follower's last acknowledged entry, as it does after any
// pipeline failure.
type guardedPipeline struct {
	inner raft.AppendPipeline
	out   chan raft.AppendFuture // what raft's decoder reads (unbuffered, as the transport's)

	ended     chan struct{} // closed at the answer that ends raft's decoder
	closed    chan struct{} // closed by Close
	forwarded chan struct{} // closed when forward returns
	closeOnce sync.Once
}

// errPipelineEnded: the follower refused an entry sent over the pipeline;
// replication goes on one request at a time.
var errPipelineEnded = errors.New("pipeline ended: the follower refused an append; replication goes on one request at a time")

var _ raft.AppendPipeline = (*guardedPipeline)(nil)

func newGuardedPipeline(inner raft.AppendPipeline) *guardedPipeline {
	p := &guardedPipeline{
		inner:     inner,
		out:       make(chan raft.AppendFuture),
		ended:     make(chan struct{}),
		closed:    make(chan struct{}),
		forwarded: make(chan struct{}),
	}
	go p.forward() // ends with Close
	return p
}

// endsDecoder is pipelineDecode's test for returning.
func endsDecoder(f raft.AppendFuture) bool {
	req, resp := f.Request(), f.Response()
	return resp == nil || req == nil || resp.Term > req.Term || !resp.Success
}

// forward hands the transport's answers to raft's decoder until one ends
// it, then drains them until Close.
func (p *guardedPipeline) forward() {
	defer close(p.forwarded)
	in := p.inner.Consumer()
	ended := false
	for {
		select {
		case f := <-in:
			if ended {
				continue // nobody reads p.out any more
			}
			if endsDecoder(f) {
				ended = true
				close(p.ended) // before the decoder sees it: no send after it parks
			}
			select {
			case p.out <- f:
			case <-p.closed:
				return
			}
		case <-p.closed:
			return
		}
	}
}

// AppendEntries sends over the pipeline, or refuses once an answer ended it.
func (p *guardedPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	select {
	case <-p.ended:
		return nil, errPipelineEnded
	default:
	}
	return p.inner.AppendEntries(args, resp)
}

// Consumer is what raft's decoder reads.
func (p *guardedPipeline) Consumer() <-chan raft.AppendFuture { return p.out }

// Close closes the transport's pipeline and waits for forward to return.
func (p *guardedPipeline) Close() error {
	err := p.inner.Close()
	p.closeOnce.Do(func() { close(p.closed) })
	<-p.forwarded
	return err
}

// AppendEntriesPipeline implements raft.Transport: raft's pipeline, guarded.
func (t *gatedTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return newGuardedPipeline(p), nil
}
