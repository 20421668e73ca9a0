package testutil

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Network is a set of TCP proxies a test puts in front of its servers'
// ports (the servers advertise the proxies' addresses to each other), so it
// can partition them. A connection through a proxy belongs to a link from
// the process that opened it to the process behind the proxy; Isolate cuts
// every link between the isolated processes and the others. A cut link is
// a blackhole, as in a real partition, not a reset: connections stay open
// (new ones are accepted) and nothing sent gets through, so callers hang
// until their own timeouts. As TCP over a real partition, what was sent is
// held, not lost: the proxy stops reading (the sender's buffers fill up)
// and delivers it intact if the link is restored before either side gives
// up on the connection. Links can also be cut one way (Drop) or slowed
// down (Delay); Heal restores every link.
type Network struct {
	t testing.TB

	mu       sync.Mutex
	isolated map[int]bool // by pid
	dropped  map[link]bool
	delayed  map[link]time.Duration
	changed  chan struct{} // closed (and replaced) when a link changes
}

// link is the direction from one process to another (pids).
type link struct{ from, to int }

// NewNetwork returns a network with no link cut. Its proxies close at test
// cleanup.
func NewNetwork(t testing.TB) *Network {
	return &Network{t: t, isolated: map[int]bool{}, dropped: map[link]bool{}, delayed: map[link]time.Duration{}, changed: make(chan struct{})}
}

// notifyLocked wakes the pipes waiting for a link to change.
func (n *Network) notifyLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
}

// Isolate cuts the process pid off from every other process (existing
// connections included).
func (n *Network) Isolate(pid int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.isolated[pid] = true
	n.notifyLocked()
}

// Drop blackholes what process from sends to process to (one way: to's
// answers still flow, on connections either opened).
func (n *Network) Drop(from, to int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.dropped[link{from, to}] = true
	n.notifyLocked()
}

// Delay holds what process from sends to process to for d before passing
// it on (one way; 0 removes the delay).
func (n *Network) Delay(from, to int, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.delayed[link{from, to}] = d
	n.notifyLocked()
}

// Heal restores every link: nothing isolated, dropped or delayed.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.isolated)
	clear(n.dropped)
	clear(n.delayed)
	n.notifyLocked()
}

// cut reports whether data sent by from to to is held back, and a channel
// closed at the next change of any link.
func (n *Network) cut(from, to int) (bool, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if from == 0 || to == 0 {
		return false, n.changed // not between two known processes (e.g. the test itself)
	}
	return n.isolated[from] != n.isolated[to] || n.dropped[link{from, to}], n.changed
}

// delay is how long data sent by from to to is held.
func (n *Network) delay(from, to int) time.Duration {
	if from == 0 || to == 0 {
		return 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.delayed[link{from, to}]
}

// Proxy forwards TCP connections from its loopback address to a target.
type Proxy struct {
	net    *Network
	ln     net.Listener
	target chan struct{} // closed once SetTarget was called
	once   sync.Once
	addr   string
	pid    atomic.Int64 // process behind the proxy
	// candidates are the pids a connection may come from.
	candidates func() []int

	mu     sync.Mutex
	conns  []net.Conn
	closed bool
	done   chan struct{} // closed when the proxy closes
	wg     sync.WaitGroup
}

// Proxy listens on a new loopback port. Connections wait until SetTarget
// names where they go. candidates lists the processes connections may come
// from (to tell whose they are).
func (n *Network) Proxy(candidates func() []int) *Proxy {
	n.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		n.t.Fatalf("proxy listen: %v", err)
	}
	p := &Proxy{net: n, ln: ln, target: make(chan struct{}), candidates: candidates, done: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	n.t.Cleanup(p.close)
	return p
}

// Addr is the proxy's address (what servers advertise).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetTarget sets the address the proxy forwards to and the pid of the
// process listening there. Call it once per process (again after a
// restart).
func (p *Proxy) SetTarget(addr string, pid int) {
	p.mu.Lock()
	p.addr = addr
	p.mu.Unlock()
	p.pid.Store(int64(pid))
	p.once.Do(func() { close(p.target) })
}

func (p *Proxy) close() {
	_ = p.ln.Close()
	p.once.Do(func() { close(p.target) })
	p.mu.Lock()
	if !p.closed {
		close(p.done)
	}
	p.closed = true
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// track keeps c to close it with the proxy; false (and c closed) if the
// proxy is closed already.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns = append(p.conns, c)
	return true
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(in) {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(in)
		}()
	}
}

func (p *Proxy) serve(in net.Conn) {
	from := ownerOf(in.RemoteAddr(), in.LocalAddr(), p.candidates())
	<-p.target
	p.mu.Lock()
	addr := p.addr
	p.mu.Unlock()
	if addr == "" {
		_ = in.Close()
		return // closed before a target was set
	}
	out, err := net.Dial("tcp", addr)
	if err != nil {
		_ = in.Close()
		return
	}
	if !p.track(out) {
		return
	}
	to := func() int { return int(p.pid.Load()) }
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(out, in, func() int { return from }, to) })
	wg.Go(func() { p.pipe(in, out, to, func() int { return from }) })
	wg.Wait()
}

// pipe copies src (data of process sender) to dst (of process receiver).
// While the link is cut it holds what it read and stops reading, until the
// link is restored or the proxy closes; a delayed link holds each read for
// its delay. It ends when either side closes.
func (p *Proxy) pipe(dst, src net.Conn, sender, receiver func() int) {
	defer func() { _ = dst.Close(); _ = src.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if d := p.net.delay(sender(), receiver()); d > 0 {
				time.Sleep(d) // the fault itself: this link is slow
			}
			for {
				cut, changed := p.net.cut(sender(), receiver())
				if !cut {
					break
				}
				select {
				case <-changed:
				case <-p.done:
					return
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// ownerOf finds which of pids holds the client end of a loopback
// connection the proxy accepted (client: its remote address; proxy: its
// local one), through /proc: the socket with that local and remote
// address, then the process with an open descriptor for it. 0 if none.
//
// Both ends must match: Linux hands the same ephemeral port to
// connections to different destinations, so a local port alone can name
// another process's socket (one to another proxy), and the connection
// would then be cut or kept by the wrong process's isolation.
func ownerOf(client, proxy net.Addr, pids []int) int {
	c, ok := client.(*net.TCPAddr)
	if !ok {
		return 0
	}
	p, ok := proxy.(*net.TCPAddr)
	if !ok {
		return 0
	}
	inode, err := socketInode(c.Port, p.Port)
	if err != nil {
		return 0
	}
	want := "socket:[" + inode + "]"
	for _, pid := range pids {
		dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && l == want {
				return pid
			}
		}
	}
	return 0
}

// socketInode is the inode of the IPv4 TCP socket from 127.0.0.1:local to
// 127.0.0.1:remote (/proc/net/tcp).
func socketInode(local, remote int) (string, error) {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return "", fmt.Errorf("open /proc/net/tcp: %w", err)
	}
	defer f.Close()
	l, r := fmt.Sprintf("0100007F:%04X", local), fmt.Sprintf("0100007F:%04X", remote)
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 9 && fields[1] == l && fields[2] == r {
			return fields[9], nil
		}
	}
	if err := s.Err(); err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read /proc/net/tcp: %w", err)
	}
	return "", fmt.Errorf("no socket from port %d to port %d", local, remote)
}

// FreeAddr returns a loopback address with a port free right now, for a
// server whose bound address a test must know before it starts (one behind
// a Proxy that advertises another). The port is chosen below the kernel's
// ephemeral range: a port from it (a ":0" listen) is free only until the
// next ":0" listen or outgoing connection takes it, which happened between
// this call and the server's bind ("address already in use") when other
// tests ran alongside. Below the range only an explicit bind can take it.
func FreeAddr(t testing.TB) string {
	t.Helper()
	low := ephemeralLow()
	const floor = 10000
	if low-floor >= 1000 {
		for range 64 {
			port := floor + rand.IntN(low-floor)
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				continue
			}
			addr := ln.Addr().String()
			ln.Close()
			return addr
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768,
// Linux's default, if it cannot be read).
func ephemeralLow() int {
	var low, high int
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		_, err = fmt.Sscan(string(b), &low, &high)
	}
	if err != nil {
		return 32768
	}
	return low
}
