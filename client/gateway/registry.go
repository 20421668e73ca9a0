package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// registries is one client per registry address, used in turn: a call
// that fails because the node is unreachable moves on to the next.
type registries struct {
	clients []*client.Client
	cur     atomic.Uint32
}

// failover reports whether err means "try another registry node".
func failover(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// Retry rounds over the registry nodes when every one answered with a
// failover error (an election, a node catching up): the first round is at
// once, then each after a pause that doubles from failoverPause up to
// failoverMaxPause, until ctx ends. Without a deadline on ctx, at most
// failoverRounds rounds.
const (
	failoverPause    = 25 * time.Millisecond
	failoverMaxPause = 200 * time.Millisecond
	failoverRounds   = 3
)

// do calls fn on the current registry, then on each other one while the
// error says the node is unreachable or not serving right now; when every
// node said so, it pauses and goes round again while ctx allows (a leader
// election takes a second or so; a member with a deadline would rather
// wait for it than fail). It returns fn's last error.
func (r *registries) do(ctx context.Context, fn func(context.Context, *client.Client) error) error {
	_, hasDeadline := ctx.Deadline()
	pause := failoverPause
	var err error
	for round := 0; ; round++ {
		start := r.cur.Load()
		for i := range uint32(len(r.clients)) {
			n := (start + i) % uint32(len(r.clients))
			if err = fn(ctx, r.clients[n]); err == nil || !failover(err) || ctx.Err() != nil {
				if err == nil && n != start {
					r.cur.Store(n)
				}
				return err
			}
		}
		if !hasDeadline && round+1 >= failoverRounds {
			return err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		pause = min(2*pause, failoverMaxPause)
	}
}

// current is the client of the registry used last.
func (r *registries) current() *client.Client {
	return r.clients[r.cur.Load()%uint32(len(r.clients))]
}

// rotate moves to the next registry (the stream broke on the current one).
func (r *registries) rotate() { r.cur.Add(1) }

func (r *registries) close() error {
	var errs []error
	for _, c := range r.clients {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// keyring holds the registry's published keys (GET /v1/keys) and fetches
// them again when a decision does not verify with them (a new or revoked
// node key), at most once per keyRefreshMin.
type keyring struct {
	regs *registries
	now  func() time.Time

	mu      sync.Mutex
	keys    attestation.DecisionKeys
	fetched time.Time
}

const keyRefreshMin = 2 * time.Second

func (k *keyring) get() attestation.DecisionKeys {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.keys
}

// refresh fetches the keys unless they were fetched less than
// keyRefreshMin ago (force ignores that). It reports whether they changed.
func (k *keyring) refresh(ctx context.Context, force bool) (bool, error) {
	k.mu.Lock()
	if !force && k.keys != nil && k.now().Sub(k.fetched) < keyRefreshMin {
		k.mu.Unlock()
		return false, nil
	}
	k.mu.Unlock()
	var keys attestation.DecisionKeys
	err := k.regs.do(ctx, func(ctx context.Context, c *client.Client) error {
		var err error
		keys, err = c.Keys(ctx)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("fetch the registry's keys: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	changed := len(keys) != len(k.keys)
	for id := range keys {
		if _, ok := k.keys[id]; !ok {
			changed = true
		}
	}
	k.keys, k.fetched = keys, k.now()
	return changed, nil
}

// verify checks a registry answer with the keys, fetching them again once
// if it does not verify (the registry may have endorsed a new node key).
func (k *keyring) verify(ctx context.Context, resp *trustfedv1.CheckInteractionResponse, now time.Time, opts attestation.VerifyOptions) (*trustfedv1.DecisionStatement, error) {
	st, err := client.VerifyDecisionWith(resp, k.get(), now, opts)
	if err == nil || errors.Is(err, attestation.ErrDecisionExpired) {
		return st, err
	}
	if changed, rerr := k.refresh(ctx, false); rerr != nil || !changed {
		return nil, err
	}
	return client.VerifyDecisionWith(resp, k.get(), now, opts)
}
