package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Node is one registry node the benchmark calls.
type Node struct {
	ID       string `json:"id,omitempty"`
	GRPCAddr string `json:"grpc_addr"`
	HTTPAddr string `json:"http_addr,omitempty"` // for /metrics ("" = no CPU figure)
}

// Target is the cluster under load and the credentials to set it up.
type Target struct {
	Nodes  []Node
	CAFile string
	// Token is an admin token (preload, writes, /metrics).
	Token string
	// AdminKeys approve admin changes: enough of them for the quorum.
	AdminKeys []ed25519.PrivateKey
}

// Local is a cluster of trustfed server processes on loopback that the
// benchmark started; Close stops them and removes their data.
type Local struct {
	Target
	dir   string
	procs []*process
}

// process is one server process.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  string
}

// addrs is what a server writes to <data-dir>/addrs.json once it listens.
type addrs struct {
	NodeID   string `json:"node_id"`
	GRPCAddr string `json:"grpc_addr"`
	HTTPAddr string `json:"http_addr"`
	CACert   string `json:"ca_cert"`
}

// startTimeout bounds the start of one server and of the cluster's set-up.
const startTimeout = 60 * time.Second

var loopback = []string{"-raft-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0"}

// noRateLimits turns the per-caller budgets off: the benchmark is one
// caller per connection doing far more than a member would.
var noRateLimits = []string{"-rate-checks", "0", "-rate-writes", "0", "-rate-reads", "0"}

// StartLocal starts n (1 or 3) `bin server` processes on loopback under a
// temporary directory: one dev server, or a cluster with its own CA, two
// admins and endorsed node keys, as an operator sets one up (docs/keys.md).
// extra flags go to every server. On error everything started is stopped.
func StartLocal(ctx context.Context, bin string, n int, extra []string, log *slog.Logger) (_ *Local, err error) {
	if n != 1 && n != 3 {
		return nil, fmt.Errorf("nodes: %d: want 1 or 3", n)
	}
	dir, err := os.MkdirTemp("", "trustfed-bench-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	l := &Local{dir: dir}
	defer func() {
		if err != nil {
			_ = l.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	flags := append(append(append([]string{}, loopback...), noRateLimits...), extra...)
	if n == 1 {
		a, err := l.start(ctx, bin, filepath.Join(dir, "dev"), append([]string{"-dev"}, flags...))
		if err != nil {
			return nil, err
		}
		l.CAFile = a.CACert
		key, err := waitFile(ctx, filepath.Join(dir, "dev", "admin.key"), attestation.LoadPrivateKey)
		if err != nil {
			return nil, err
		}
		l.AdminKeys = []ed25519.PrivateKey{key}
		if l.Token, err = waitToken(ctx, filepath.Join(dir, "dev")); err != nil {
			return nil, err
		}
		log.Info("dev server started", "grpc", a.GRPCAddr, "dir", dir)
		return l, waitServing(ctx, l.Target)
	}
	if err := l.startCluster(ctx, bin, flags, log); err != nil {
		return nil, err
	}
	return l, nil
}

// startCluster starts n1 (bootstrap), joins n2 and n3 through it, enrols
// two admins and has them endorse every node's signing key.
func (l *Local) startCluster(ctx context.Context, bin string, flags []string, log *slog.Logger) error {
	ca, err := attestation.NewCA("trustfed bench CA", time.Now(), 24*time.Hour)
	if err != nil {
		return fmt.Errorf("cluster CA: %w", err)
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return fmt.Errorf("cluster CA key: %w", err)
	}
	pki := filepath.Join(l.dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return fmt.Errorf("pki dir: %w", err)
	}
	l.CAFile = filepath.Join(pki, "ca.pem")
	if err := attestation.WritePEMFiles(l.CAFile, filepath.Join(pki, "ca-key.pem"), ca.CertPEM, caKey, true); err != nil {
		return fmt.Errorf("write the cluster CA: %w", err)
	}
	for i, id := range []string{"n1", "n2", "n3"} {
		certPEM, keyPEM, err := ca.IssueNode(id, []string{"127.0.0.1", "localhost"}, time.Now(), 24*time.Hour)
		if err != nil {
			return fmt.Errorf("node certificate %s: %w", id, err)
		}
		cert, key := filepath.Join(pki, id+".pem"), filepath.Join(pki, id+"-key.pem")
		if err := attestation.WritePEMFiles(cert, key, certPEM, keyPEM, true); err != nil {
			return fmt.Errorf("write node certificate %s: %w", id, err)
		}
		args := append([]string{"-node-id", id, "-tls-ca", l.CAFile, "-tls-cert", cert, "-tls-key", key,
			"-tls-ca-key", filepath.Join(pki, "ca-key.pem")}, flags...)
		if i == 0 {
			args = append(args, "-bootstrap")
		} else {
			args = append(args, "-join", l.Nodes[0].GRPCAddr)
		}
		if _, err := l.start(ctx, bin, filepath.Join(l.dir, id), args); err != nil {
			return err
		}
		if i == 0 {
			if l.Token, err = waitToken(ctx, filepath.Join(l.dir, id)); err != nil {
				return err
			}
			if err := waitServing(ctx, l.Target); err != nil {
				return err
			}
		}
	}
	log.Info("cluster started", "nodes", len(l.Nodes), "dir", l.dir)
	admin, err := dialAdmin(ctx, l.Target, l.Nodes[0])
	if err != nil {
		return err
	}
	defer admin.Close()
	if l.AdminKeys, err = enrolAdmins(ctx, admin); err != nil {
		return err
	}
	// The admin keys go next to the CA, so that `bench --target` (and an
	// operator) can make admin changes on a cluster kept with --keep.
	for i, key := range l.AdminKeys {
		if err := attestation.SavePrivateKey(filepath.Join(pki, fmt.Sprintf("admin-%d.key", i+1)), key); err != nil {
			return fmt.Errorf("save admin key %d: %w", i+1, err)
		}
	}
	if err := waitVoters(ctx, admin, len(l.Nodes)); err != nil {
		return err
	}
	if err := endorseNodeKeys(ctx, l.Target); err != nil {
		return err
	}
	return waitServing(ctx, l.Target)
}

// start runs `bin server -data-dir dir args...` and waits for its
// addresses; its stderr goes to dir/server.log.
func (l *Local) start(ctx context.Context, bin, dir string, args []string) (addrs, error) {
	var a addrs
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return a, fmt.Errorf("data dir: %w", err)
	}
	logPath := filepath.Join(dir, "server.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return a, fmt.Errorf("server log: %w", err)
	}
	cmd := exec.Command(bin, append([]string{"server", "-data-dir", dir}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return a, fmt.Errorf("start %s server: %w", bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		p.err = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	l.procs = append(l.procs, p)
	a, err = waitFile(ctx, filepath.Join(dir, "addrs.json"), func(path string) (addrs, error) {
		select {
		case <-p.done:
			b, _ := os.ReadFile(p.log)
			return addrs{}, fmt.Errorf("server exited: %v: %s", p.err, tail(string(b), 2000))
		default:
		}
		var a addrs
		b, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(b, &a)
		}
		return a, err
	})
	if err != nil {
		return a, err
	}
	l.Nodes = append(l.Nodes, Node{ID: a.NodeID, GRPCAddr: a.GRPCAddr, HTTPAddr: a.HTTPAddr})
	return a, nil
}

// Close stops every server (SIGTERM, then SIGKILL after 10 s) and removes
// their data.
func (l *Local) Close() error {
	var errs []error
	for _, p := range l.procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
			errs = append(errs, fmt.Errorf("server %d killed after 10 s", p.cmd.Process.Pid))
		}
	}
	if l.dir != "" {
		errs = append(errs, os.RemoveAll(l.dir))
	}
	return errors.Join(errs...)
}

// Dir is the directory of the servers' data (and, for 3 nodes, pki/
// with the cluster CA and its key).
func (l *Local) Dir() string { return l.dir }

// PIDs are the server processes' ids.
func (l *Local) PIDs() []int {
	var out []int
	for _, p := range l.procs {
		out = append(out, p.cmd.Process.Pid)
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// waitFile polls read(path) until it succeeds or ctx ends.
func waitFile[T any](ctx context.Context, path string, read func(string) (T, error)) (T, error) {
	return poll(ctx, path, func() (T, error) { return read(path) })
}

// poll calls f every 50 ms until it succeeds or ctx ends (what names the
// wait in the error).
func poll[T any](ctx context.Context, what string, f func() (T, error)) (T, error) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		v, err := f()
		if err == nil {
			return v, nil
		}
		if strings.HasPrefix(err.Error(), "server exited") {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("wait for %s: %w (last: %v)", what, ctx.Err(), err)
		case <-t.C:
		}
	}
}

func waitToken(ctx context.Context, dataDir string) (string, error) {
	return waitFile(ctx, filepath.Join(dataDir, "admin.token"), func(p string) (string, error) {
		b, err := os.ReadFile(p)
		if err == nil && len(strings.TrimSpace(string(b))) == 0 {
			err = errors.New("empty")
		}
		return strings.TrimSpace(string(b)), err
	})
}

// dialAdmin connects to node with the target's admin token.
func dialAdmin(ctx context.Context, t Target, node Node) (*client.Client, error) {
	c, err := client.New(ctx, client.Config{Addr: node.GRPCAddr, Token: t.Token, CACertFile: t.CAFile, Timeout: 30 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", node.GRPCAddr, err)
	}
	return c, nil
}

// waitServing waits until every node answers an authenticated
// linearizable read.
func waitServing(ctx context.Context, t Target) error {
	for _, n := range t.Nodes {
		c, err := dialAdmin(ctx, t, n)
		if err != nil {
			return err
		}
		_, err = poll(ctx, n.GRPCAddr+" serving", func() (any, error) {
			return c.Registry().ListOrganizations(ctx, &trustfedv1.ListOrganizationsRequest{PageSize: 1})
		})
		_ = c.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// enrolAdmins enrols two admins with fresh keys (the first approves its
// own enrolment and the second's, as a federation with fewer admins than
// its quorum allows); from then on a change needs both.
func enrolAdmins(ctx context.Context, c *client.Client) ([]ed25519.PrivateKey, error) {
	var keys []ed25519.PrivateKey
	for _, id := range []string{"bench-admin-1", "bench-admin-2"} {
		pub, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		change := &trustfedv1.AdminChange{Reason: "trustfed bench: enrol " + id, Change: &trustfedv1.AdminChange_AddAdmin{AddAdmin: &trustfedv1.AddAdminChange{AdminId: id, Name: id, PublicKey: pub}}}
		signer := key
		if len(keys) > 0 {
			signer = keys[0]
		}
		rec, err := c.ProposeAdminChange(ctx, signer, change, time.Hour)
		if err != nil {
			return nil, fmt.Errorf("enrol admin %s: %w", id, err)
		}
		if rec.Status != trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_APPLIED {
			return nil, fmt.Errorf("enrol admin %s: %v", id, rec.Status)
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// waitVoters waits until the cluster has n voters.
func waitVoters(ctx context.Context, c *client.Client, n int) error {
	_, err := poll(ctx, fmt.Sprintf("%d voters", n), func() (any, error) {
		st, err := c.Cluster().Status(ctx, &trustfedv1.StatusRequest{})
		if err != nil {
			return nil, err
		}
		voters := 0
		for _, m := range st.Members {
			if m.Suffrage == trustfedv1.Suffrage_SUFFRAGE_VOTER {
				voters++
			}
		}
		if voters != n {
			return nil, fmt.Errorf("%d voters", voters)
		}
		return nil, nil
	})
	return err
}

// endorseNodeKeys has the admins endorse each node's own signing key, as
// the node reports it (unless it is already endorsed: the bootstrapping
// node's is), and waits until every node sees its endorsement.
func endorseNodeKeys(ctx context.Context, t Target) error {
	admin, err := dialAdmin(ctx, t, t.Nodes[0])
	if err != nil {
		return err
	}
	defer admin.Close()
	now := time.Now()
	for _, n := range t.Nodes {
		c, err := dialAdmin(ctx, t, n)
		if err != nil {
			return err
		}
		st, err := c.Cluster().Status(ctx, &trustfedv1.StatusRequest{})
		if err == nil && !st.NodeKeyEndorsed { // the bootstrapping node's key is endorsed at bootstrap
			err = applyChange(ctx, admin, t.AdminKeys, client.EndorseNodeKey(st.NodeId, st.NodePublicKey, now.Add(-time.Minute), now.Add(24*time.Hour)))
		}
		if err == nil {
			_, err = poll(ctx, n.GRPCAddr+" key endorsed", func() (any, error) {
				st, err := c.Cluster().Status(ctx, &trustfedv1.StatusRequest{})
				if err == nil && !st.NodeKeyEndorsed {
					err = errors.New("not endorsed yet")
				}
				return nil, err
			})
		}
		_ = c.Close()
		if err != nil {
			return fmt.Errorf("endorse the key of %s: %w", n.GRPCAddr, err)
		}
	}
	return nil
}

// applyChange proposes change with the first key and approves it with the
// others until it is applied.
func applyChange(ctx context.Context, c *client.Client, keys []ed25519.PrivateKey, change *trustfedv1.AdminChange) error {
	if change.Reason == "" {
		change.Reason = "trustfed bench preload"
	}
	rec, err := c.ProposeAdminChange(ctx, keys[0], change, time.Hour)
	for _, key := range keys[1:] {
		if err != nil || rec.Status == trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_APPLIED {
			break
		}
		rec, err = c.ApproveAdminChange(ctx, key, rec.Id)
	}
	if err != nil {
		return fmt.Errorf("admin change: %w", err)
	}
	if rec.Status != trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_APPLIED {
		return fmt.Errorf("admin change %s still %v after every key approved: more admin keys are needed", rec.Id, rec.Status)
	}
	return nil
}
