package attestation

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// handshakeResult is what the server side of a test connection saw.
type handshakeResult struct {
	err        error
	peerNodeID string
}

// serveOnce accepts one connection on ln, completes the handshake, writes
// "ok" and reports what it saw.
func serveOnce(ln net.Listener) <-chan handshakeResult {
	out := make(chan handshakeResult, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			out <- handshakeResult{err: err}
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		tc := conn.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			out <- handshakeResult{err: err}
			return
		}
		var res handshakeResult
		if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
			res.peerNodeID, _ = NodeIDFromCert(certs[0])
		}
		_, res.err = tc.Write([]byte("ok"))
		out <- res
	}()
	return out
}

// dial connects with cfg, completes the handshake and reads the server's
// greeting (in TLS 1.3 a rejected client certificate shows up only there).
func dial(addr string, cfg *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return err
	}
	if string(buf) != "ok" {
		return errors.New("unexpected greeting")
	}
	return nil
}

func TestTLSHandshake(t *testing.T) {
	now := time.Now()
	serverFiles, err := EnsureDevTLS(t.TempDir(), "server", []string{"127.0.0.1"}, now)
	require.NoError(t, err)
	serverCfg, err := ServerTLSConfig(serverFiles)
	require.NoError(t, err)
	require.Equal(t, uint16(tls.VersionTLS13), serverCfg.MinVersion)
	require.Equal(t, tls.VerifyClientCertIfGiven, serverCfg.ClientAuth)

	// A peer node certificate from the same CA.
	ca, err := LoadCA(serverFiles.CAFile, serverFiles.CAKeyFile)
	require.NoError(t, err)
	peerDir := t.TempDir()
	peerCert, peerKey := filepath.Join(peerDir, "peer.pem"), filepath.Join(peerDir, "peer-key.pem")
	certPEM, keyPEM, err := ca.IssueNode("peer-2", []string{"127.0.0.1"}, now, time.Hour)
	require.NoError(t, err)
	require.NoError(t, WritePEMFiles(peerCert, peerKey, certPEM, keyPEM, false))

	// A node of another federation: its own CA and certificate.
	foreignFiles, err := EnsureDevTLS(t.TempDir(), "foreign", []string{"127.0.0.1"}, now)
	require.NoError(t, err)

	tests := []struct {
		name         string
		caFile       string
		certFile     string
		keyFile      string
		wantClient   bool // client side succeeds
		wantServer   bool // server side succeeds
		wantPeerNode string
	}{
		{"no client cert", serverFiles.CAFile, "", "", true, true, ""},
		{"node client cert", serverFiles.CAFile, peerCert, peerKey, true, true, "peer-2"},
		{"client cert from another CA", serverFiles.CAFile, foreignFiles.CertFile, foreignFiles.KeyFile, false, false, ""},
		{"server from another CA", foreignFiles.CAFile, "", "", false, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := tls.Listen("tcp", "127.0.0.1:0", serverCfg)
			require.NoError(t, err)
			defer ln.Close()
			served := serveOnce(ln)

			clientCfg, err := ClientTLSConfig(tt.caFile, tt.certFile, tt.keyFile)
			require.NoError(t, err)
			clientErr := dial(ln.Addr().String(), clientCfg)
			res := <-served
			if tt.wantClient {
				require.NoError(t, clientErr)
			} else {
				require.Error(t, clientErr)
			}
			if tt.wantServer {
				require.NoError(t, res.err)
				require.Equal(t, tt.wantPeerNode, res.peerNodeID)
			} else {
				require.Error(t, res.err)
			}
		})
	}
}

func TestTLSConfigErrors(t *testing.T) {
	files, err := EnsureDevTLS(t.TempDir(), "n1", nil, time.Now())
	require.NoError(t, err)

	_, err = ServerTLSConfig(TLSFiles{})
	require.Error(t, err)
	_, err = ServerTLSConfig(TLSFiles{CAFile: files.KeyFile, CertFile: files.CertFile, KeyFile: files.KeyFile})
	require.ErrorIs(t, err, ErrInvalidPEM)
	_, err = ServerTLSConfig(TLSFiles{CAFile: files.CAFile, CertFile: files.CertFile, KeyFile: files.CAKeyFile})
	require.Error(t, err, "key does not match certificate")

	_, err = ClientTLSConfig(files.CAFile, files.CertFile, "")
	require.Error(t, err)
	_, err = ClientTLSConfig("/nonexistent/ca.pem", "", "")
	require.Error(t, err)
	cfg, err := ClientTLSConfig("", "", "")
	require.NoError(t, err)
	require.Nil(t, cfg.RootCAs, "system roots")
}
