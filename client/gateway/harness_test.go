package gateway_test

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/client/gateway"
	"github.com/trustfed/trustfed/internal/testutil"
	"github.com/trustfed/trustfed/internal/testutil/testserver"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// testFed is a real dev registry with organisations enrolled at level 3
// and agreements between them.
type testFed struct {
	dev      *testserver.Dev
	admin    *client.Client
	adminKey ed25519.PrivateKey
	fed      *testutil.Federation
	ca       *x509.CertPool
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startFed starts a dev registry, enrols orgs (level 3) and makes an
// agreement covering actions between the first organisation and each
// other one.
func startFed(t testing.TB, orgs []string, actions ...string) *testFed {
	t.Helper()
	f := &testFed{dev: testserver.StartDev(t), fed: testutil.NewFederation(t)}
	f.admin = f.dev.Client(t)
	key, err := attestation.LoadPrivateKey(f.dev.Info.AdminKeyFile)
	require.NoError(t, err)
	f.adminKey = key
	pool, err := attestation.LoadCertPool(f.dev.CAFile())
	require.NoError(t, err)
	f.ca = pool
	f.apply(t, testutil.Accredit(f.fed.Issuer()))
	f.apply(t, testutil.Policy(&trustfedv1.FederationPolicyChange{OnboardingCapLevel: proto.Uint32(4)}))
	for _, org := range orgs {
		reg, sig := f.fed.Registration(org, 3, 3, time.Now())
		_, err := f.admin.Membership().RegisterOrganization(ctxT(t), &trustfedv1.RegisterOrganizationRequest{Registration: reg, Signature: sig})
		require.NoError(t, err)
		_, err = f.admin.Admin().ApproveOrganization(ctxT(t), &trustfedv1.ApproveOrganizationRequest{OrganizationId: org})
		require.NoError(t, err)
	}
	for _, other := range orgs[1:] {
		f.agree(t, orgs[0], other, actions...)
	}
	return f
}

// apply applies an admin change with the dev admin's key (the dev
// federation's only admin).
func (f *testFed) apply(t testing.TB, change *trustfedv1.AdminChange) {
	t.Helper()
	if change.Reason == "" {
		change.Reason = "gateway test"
	}
	rec, err := f.admin.ProposeAdminChange(ctxT(t), f.adminKey, change, time.Hour)
	require.NoError(t, err)
	require.Equal(t, trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_APPLIED, rec.Status)
}

func (f *testFed) agree(t testing.TB, a, b string, actions ...string) *trustfedv1.Agreement {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	p, err := f.admin.Membership().ProposeAgreement(ctxT(t), &trustfedv1.ProposeAgreementRequest{
		OrganizationAId: a, OrganizationBId: b, Scope: &trustfedv1.AgreementScope{AllowedActions: actions},
		NotBefore: timestamppb.New(now.Add(-time.Minute)), NotAfter: timestamppb.New(now.Add(24 * time.Hour)),
	})
	require.NoError(t, err)
	var last *trustfedv1.Agreement
	for _, org := range []string{a, b} {
		s, err := f.admin.Membership().SignAgreement(ctxT(t), &trustfedv1.SignAgreementRequest{AgreementId: p.Agreement.Id, OrganizationId: org, Signature: f.fed.SignTerms(org, p.Agreement.Terms)})
		require.NoError(t, err)
		last = s.Agreement
	}
	require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE, last.Status)
	return last
}

// revoke revokes org.
func (f *testFed) revoke(t testing.TB, org string) {
	t.Helper()
	f.apply(t, testutil.SetStatus(org, trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED))
}

// testGateway is a running gateway with its HTTPS listener.
type testGateway struct {
	*gateway.Gateway
	org    string
	member *testutil.Member
	url    string
	cancel context.CancelFunc
	inbox  chan *gateway.Message
}

// listener is a loopback listener and the gateway URL it will serve.
type listener struct {
	ln  net.Listener
	url string
}

func listen(t testing.TB) listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	return listener{ln: ln, url: "https://" + ln.Addr().String() + "/trustfed/envelope"}
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// start enrols a member node of org and runs its gateway on l, with
// partners, the pass-through policy and gates (the controls path is
// tested on its own), an inbox of delivered messages that answers "ok",
// then mutate.
func (f *testFed) start(t testing.TB, org string, l listener, partners map[string]string, mutate ...func(*gateway.Config)) *testGateway {
	t.Helper()
	m := testutil.EnrolMember(t, f.admin, f.fed, org, "")
	tg := &testGateway{org: org, member: m, url: l.url, inbox: make(chan *gateway.Message, 1024)}
	cfg := gateway.Config{
		Organization: org, Node: m.Node, Key: m.Key, Registries: []string{f.dev.GRPCAddr()}, FederationCA: f.ca,
		Partners: partners, Policy: gateway.PassThrough{}, OutboundGate: gateway.PassThrough{}, InboundGate: gateway.PassThrough{},
		Deliver: func(_ context.Context, msg *gateway.Message) ([]byte, error) {
			select {
			case tg.inbox <- msg:
			default:
			}
			return []byte("ok:" + string(msg.Payload)), nil
		},
		Logger: testLogger(),
	}
	for _, fn := range mutate {
		fn(&cfg)
	}
	g, err := gateway.New(ctxT(t), cfg)
	require.NoError(t, err)
	tg.Gateway = g
	ctx, cancel := context.WithCancel(context.Background())
	tg.cancel = cancel
	done := make(chan struct{})
	go func() { defer close(done); _ = g.Run(ctx) }()
	srv := &http.Server{Handler: g.Handler(), TLSConfig: g.ServerTLSConfig(), ErrorLog: nil, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(tls.NewListener(l.ln, srv.TLSConfig)) }()
	t.Cleanup(func() {
		_ = srv.Close()
		<-served
		cancel()
		<-done
		require.NoError(t, g.Close())
	})
	require.NoError(t, g.Ready(ctxT(t)))
	return tg
}

// pair starts the gateways of a and b, each the other's partner.
func (f *testFed) pair(t testing.TB, a, b string, mutate ...func(*gateway.Config)) (*testGateway, *testGateway) {
	t.Helper()
	la, lb := listen(t), listen(t)
	ga := f.start(t, a, la, map[string]string{b: lb.url}, mutate...)
	gb := f.start(t, b, lb, map[string]string{a: la.url}, mutate...)
	return ga, gb
}

// eventually waits for cond.
func eventually(t testing.TB, what string, cond func() error) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, what, cond)
}

var errNotYet = errors.New("not yet")
