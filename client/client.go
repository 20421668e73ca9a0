package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Defaults used by ConfigFromEnv and New.
const (
	// DefaultAddr is the gRPC address of a local registry node.
	DefaultAddr = "127.0.0.1:7443"
	// DefaultTimeout is the per-call timeout ConfigFromEnv sets.
	DefaultTimeout = 10 * time.Second
)

// Config says how to reach and authenticate to a registry node.
type Config struct {
	// Addr is the node's gRPC address, host:port (DefaultAddr if empty).
	Addr string
	// Token is the bearer token sent with every call ("" = none).
	Token string
	// CACertFile is the PEM file of the CA that signed the node's
	// certificate ("" = the system roots). Ignored when TLS is set.
	CACertFile string
	// CertFile and KeyFile are an optional client certificate (a member
	// node's certificate). Ignored when TLS is set.
	CertFile string
	KeyFile  string
	// TLS, if set, is used as is instead of CACertFile/CertFile/KeyFile.
	TLS *tls.Config
	// GetClientCertificate, if set, supplies the client certificate at
	// each TLS handshake (MemberCredentials.GetClientCertificate: a member
	// node's renewed certificate). Not with CertFile/KeyFile.
	GetClientCertificate func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	// Insecure uses plaintext. For tests only: the token then travels in
	// the clear.
	Insecure bool
	// Timeout bounds every unary call whose context has no deadline
	// (0 = no bound).
	Timeout time.Duration
	// DialOptions are appended to the options New builds.
	DialOptions []grpc.DialOption
}

// Client is a connection to a registry node. It is safe for concurrent use.
type Client struct {
	conn     *grpc.ClientConn
	registry trustfedv1.RegistryServiceClient
	admin    trustfedv1.AdminServiceClient
	cluster  trustfedv1.ClusterServiceClient
	member   trustfedv1.MembershipServiceClient
	cascade  trustfedv1.CascadeServiceClient
	audit    trustfedv1.AuditServiceClient
}

// New opens one gRPC connection described by cfg. The connection is
// established in the background; the first call waits for it.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("new client: %w", err)
	}
	addr := cfg.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	transport, err := transportCredentials(cfg)
	if err != nil {
		return nil, fmt.Errorf("new client: %w", err)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(transport),
		grpc.WithChainUnaryInterceptor(timeoutInterceptor(cfg.Timeout), requestIDInterceptor, rateLimitInterceptor),
	}
	if cfg.Token != "" {
		if err := validateToken(cfg.Token); err != nil {
			return nil, fmt.Errorf("new client: %w", err)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken{token: cfg.Token, secure: !cfg.Insecure}))
	}
	opts = append(opts, cfg.DialOptions...)
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("new client: %w", err)
	}
	conn.Connect()
	return &Client{
		conn:     conn,
		registry: trustfedv1.NewRegistryServiceClient(conn),
		admin:    trustfedv1.NewAdminServiceClient(conn),
		cluster:  trustfedv1.NewClusterServiceClient(conn),
		member:   trustfedv1.NewMembershipServiceClient(conn),
		cascade:  trustfedv1.NewCascadeServiceClient(conn),
		audit:    trustfedv1.NewAuditServiceClient(conn),
	}, nil
}

func transportCredentials(cfg Config) (credentials.TransportCredentials, error) {
	if cfg.Insecure {
		if cfg.TLS != nil || cfg.CACertFile != "" || cfg.CertFile != "" || cfg.KeyFile != "" || cfg.GetClientCertificate != nil {
			return nil, errors.New("insecure cannot be combined with tls settings")
		}
		return insecure.NewCredentials(), nil
	}
	if cfg.GetClientCertificate != nil && (cfg.CertFile != "" || cfg.KeyFile != "") {
		return nil, errors.New("a client certificate callback cannot be combined with certificate files")
	}
	tlsCfg := cfg.TLS.Clone()
	if tlsCfg == nil {
		var err error
		if tlsCfg, err = attestation.ClientTLSConfig(cfg.CACertFile, cfg.CertFile, cfg.KeyFile); err != nil {
			return nil, err
		}
	}
	if cfg.GetClientCertificate != nil {
		tlsCfg.GetClientCertificate = cfg.GetClientCertificate
	}
	return credentials.NewTLS(tlsCfg), nil
}

// Close closes the connection; calls in flight fail.
func (c *Client) Close() error {
	if err := c.conn.Close(); err != nil {
		return fmt.Errorf("close client: %w", err)
	}
	return nil
}

// Conn returns the underlying connection, for services this package does
// not wrap.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Registry returns the RegistryService client (checks, organisation reads).
func (c *Client) Registry() trustfedv1.RegistryServiceClient { return c.registry }

// Admin returns the AdminService client (registry changes, agreements).
func (c *Client) Admin() trustfedv1.AdminServiceClient { return c.admin }

// Cluster returns the ClusterService client (status, membership).
func (c *Client) Cluster() trustfedv1.ClusterServiceClient { return c.cluster }

// Membership is the client of the organisations' signed requests.
func (c *Client) Membership() trustfedv1.MembershipServiceClient { return c.member }

// Cascades is the CascadeService: sessions, the notification graph, event
// streams and acknowledgements, revocation cascades.
func (c *Client) Cascades() trustfedv1.CascadeServiceClient { return c.cascade }

// Audit is the AuditService client: signed tree heads, entries, proofs,
// witness cosignatures.
func (c *Client) Audit() trustfedv1.AuditServiceClient { return c.audit }
