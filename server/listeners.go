package server

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/registry"
)

// tlsSet is the TLS material and the configurations built from it.
type tlsSet struct {
	files   attestation.TLSFiles
	server  *tls.Config // gRPC and HTTPS listeners
	peer    *tls.Config // this node as a client of its peers
	raft    *tls.Config // the Raft transport, both directions
	gateway *tls.Config // the REST gateway dialling this node's gRPC
}

// loadTLS reads -tls-ca/-tls-cert/-tls-key, or in dev mode generates (once)
// a CA and node certificate under <data-dir>/tls.
func loadTLS(cfg Config) (tlsSet, error) {
	files, err := tlsFiles(cfg)
	if err != nil {
		return tlsSet{}, err
	}
	t := tlsSet{files: files}
	if t.server, err = attestation.ServerTLSConfig(files); err != nil {
		return t, err
	}
	t.server.VerifyConnection = registry.RequireTrustfedIdentity
	if t.peer, err = attestation.ClientTLSConfig(files.CAFile, files.CertFile, files.KeyFile); err != nil {
		return t, err
	}
	t.raft = t.peer.Clone()
	t.raft.ClientCAs = t.peer.RootCAs
	t.raft.ClientAuth = tls.RequireAndVerifyClientCert
	if t.gateway, err = attestation.ClientTLSConfig(files.CAFile, "", ""); err != nil {
		return t, err
	}
	return t, nil
}

func tlsFiles(cfg Config) (attestation.TLSFiles, error) {
	if cfg.TLSCA != "" {
		return attestation.TLSFiles{CAFile: cfg.TLSCA, CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey}, nil
	}
	files, err := attestation.EnsureDevTLS(filepath.Join(cfg.DataDir, "tls"), cfg.NodeID, []string{"127.0.0.1", "::1", "localhost"}, time.Now())
	if err != nil {
		return files, fmt.Errorf("dev TLS material: %w", err)
	}
	return files, nil
}

// listeners are the sockets the server binds before anything starts, so
// ports chosen with :0 are known at once.
type listeners struct {
	grpc, http, debug net.Listener // debug is nil without -debug-addr
}

func listen(cfg Config) (listeners, error) {
	var l listeners
	var err error
	if l.grpc, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return l, fmt.Errorf("listen -grpc-addr %s: %w", cfg.GRPCAddr, err)
	}
	if l.http, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return l, errors.Join(fmt.Errorf("listen -http-addr %s: %w", cfg.HTTPAddr, err), l.close())
	}
	if cfg.DebugAddr != "" {
		if l.debug, err = net.Listen("tcp", cfg.DebugAddr); err != nil {
			return l, errors.Join(fmt.Errorf("listen -debug-addr %s: %w", cfg.DebugAddr, err), l.close())
		}
	}
	return l, nil
}

// close closes every listener still open; already closed ones are not an error.
func (l listeners) close() error {
	var errs []error
	for _, lis := range []net.Listener{l.grpc, l.http, l.debug} {
		if lis == nil {
			continue
		}
		if err := lis.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// dialable turns a listener address into one the gateway can dial (an
// unspecified host becomes loopback).
func dialable(a net.Addr) string {
	host, port, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// AddrsFile is the name of the file a server writes to its data dir once
// it listens, so tools and tests can find ports chosen with :0.
const AddrsFile = "addrs.json"

// Addrs is the content of AddrsFile.
type Addrs struct {
	NodeID   string `json:"node_id"`
	GRPCAddr string `json:"grpc_addr"`
	HTTPAddr string `json:"http_addr"`
	RaftAddr string `json:"raft_addr"`
	CACert   string `json:"ca_cert"`
}

func (s *Server) writeAddrs() error {
	b, err := json.MarshalIndent(Addrs{NodeID: s.cfg.NodeID, GRPCAddr: s.GRPCAddr(), HTTPAddr: s.HTTPAddr(), RaftAddr: s.RaftAddr(), CACert: s.CAFile()}, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(s.cfg.DataDir, AddrsFile)
	if err := os.WriteFile(path+".tmp", append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(path+".tmp", path)
}

// ReadAddrs reads the AddrsFile a server wrote to dataDir (an error
// wrapping os.ErrNotExist when there is none).
func ReadAddrs(dataDir string) (Addrs, error) {
	path := filepath.Join(dataDir, AddrsFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return Addrs{}, fmt.Errorf("read %s: %w", path, err)
	}
	var a Addrs
	if err := json.Unmarshal(b, &a); err != nil {
		return Addrs{}, fmt.Errorf("read %s: %w", path, err)
	}
	return a, nil
}
