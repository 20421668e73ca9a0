package gateway_test

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/client/gateway"
	gatewayv1 "github.com/trustfed/trustfed/proto/trustfed/gateway/v1"
)

// capture is a Transport that records every envelope by recipient and,
// when a receiver is registered for it, hands it to its Receive
// (otherwise it answers accepted without delivering).
type capture struct {
	mu   sync.Mutex
	to   map[string]*gateway.Gateway
	sent map[string][]*gatewayv1.Envelope
}

func newCapture() *capture {
	return &capture{to: map[string]*gateway.Gateway{}, sent: map[string][]*gatewayv1.Envelope{}}
}

func (c *capture) Deliver(ctx context.Context, to string, env *gatewayv1.Envelope) (*gatewayv1.Reply, error) {
	c.mu.Lock()
	c.sent[to] = append(c.sent[to], env)
	g := c.to[to]
	c.mu.Unlock()
	if g == nil {
		return &gatewayv1.Reply{Accepted: true}, nil
	}
	return g.Receive(ctx, env), nil
}

func (c *capture) deliverTo(org string, g *gateway.Gateway) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.to[org] = g
}

func (c *capture) last(t testing.TB, to string) *gatewayv1.Envelope {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	require.NotEmpty(t, c.sent[to], "nothing sent to %s", to)
	return c.sent[to][len(c.sent[to])-1]
}

// cutProxy forwards TCP connections to target until cut: then it closes
// every open connection and every new one, until restored.
type cutProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startProxy(t testing.TB, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			_ = in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = in.Close()
			continue
		}
		p.conns[in], p.conns[out] = struct{}{}, struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(out, in)
		go p.pipe(in, out)
	}
}

func (p *cutProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
}

// cut closes every connection and refuses new ones.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

func (p *cutProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}
