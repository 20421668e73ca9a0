package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Action is what every preloaded agreement covers and every check asks.
const Action = "task_send"

// Fixture is what Preload made: organisations (each with its own key) and
// the agreements between them, as pairs of organisation indexes.
type Fixture struct {
	Orgs  []string
	Pairs [][2]int
	// Partners[i] are the organisations org i has an agreement with.
	Partners [][]int
	// MemberNodes are how many member nodes were enrolled in the preload
	// (spread round robin over the organisations).
	MemberNodes int
	keys        []ed25519.PrivateKey
}

// DefaultPreloadWorkers bounds the concurrent set-up calls unless
// PreloadOptions.Workers says otherwise.
const DefaultPreloadWorkers = 8

// DefaultPreloadImport is how many agreements one ImportAgreements call of
// the preload carries unless PreloadOptions.Import says otherwise (~330
// bytes each: well under the API's 1 MiB message and the 1,000 per call).
const DefaultPreloadImport = 500

// PreloadOptions are the optional parts of a preload.
type PreloadOptions struct {
	// MemberNodes are enrolled (EnrolMemberNode, signed with their
	// organisation's key) round robin over the organisations, beyond the
	// connections' own member nodes; they get no certificate.
	MemberNodes int
	// Workers are the concurrent set-up calls (DefaultPreloadWorkers if 0):
	// concurrent proposals are committed together (one Raft append and
	// fsync for many), so more workers load faster until the cores are busy.
	Workers int
	// Import is how many agreements each AdminService.ImportAgreements call
	// carries, signed by both parties here (one Raft command, each signature
	// verified once, by the state machine); 0: three calls per agreement
	// (ProposeAgreement, then each party's SignAgreement).
	Import int
}

// Preload accredits a fresh passport issuer (and lifts the onboarding cap
// to 4) through the admin quorum keys, registers and approves orgs
// organisations at level 4 and has agreements of them signed, org i with
// org i+1, i+2, ... (mod orgs) until there are agreements of them. Names
// carry a random run id, so a running cluster can be preloaded again.
//
// The preload goes through the public API only, opts.Workers calls at a
// time: one call per write, but for the agreements with opts.Import, which
// go opts.Import to an ImportAgreements call; progress is logged every 10 s.
func Preload(ctx context.Context, admin *client.Client, keys []ed25519.PrivateKey, orgs, agreements int, opts PreloadOptions, log *slog.Logger) (*Fixture, error) {
	if orgs < 2 {
		return nil, fmt.Errorf("orgs: %d: want at least 2", orgs)
	}
	if agreements < 1 || agreements > orgs*(orgs-1)/2 {
		return nil, fmt.Errorf("agreements: %d: want 1 to %d for %d organisations", agreements, orgs*(orgs-1)/2, orgs)
	}
	if opts.MemberNodes < 0 {
		return nil, fmt.Errorf("member-nodes: %d: want 0 or more", opts.MemberNodes)
	}
	workers := opts.Workers
	if workers == 0 {
		workers = DefaultPreloadWorkers
	}
	if workers < 1 {
		return nil, fmt.Errorf("preload-workers: %d: want at least 1", workers)
	}
	run := randomID()
	_, issuerKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	issuer := "bench-issuer-" + run
	if err := applyChange(ctx, admin, keys, &trustfedv1.AdminChange{Change: &trustfedv1.AdminChange_AccreditIssuer{AccreditIssuer: &trustfedv1.AccreditIssuerChange{
		IssuerId: issuer, Name: "trustfed bench issuer", PublicKey: issuerKey.Public().(ed25519.PublicKey), MaxLevel: 4}}}); err != nil {
		return nil, fmt.Errorf("accredit the bench issuer: %w", err)
	}
	if err := applyChange(ctx, admin, keys, &trustfedv1.AdminChange{Change: &trustfedv1.AdminChange_UpdateFederationPolicy{UpdateFederationPolicy: &trustfedv1.FederationPolicyChange{OnboardingCapLevel: proto.Uint32(4)}}}); err != nil {
		return nil, fmt.Errorf("lift the onboarding cap: %w", err)
	}
	f := &Fixture{Partners: make([][]int, orgs)}
	for i := range orgs {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		f.Orgs = append(f.Orgs, fmt.Sprintf("b%s-%05d", run, i))
		f.keys = append(f.keys, key)
	}
	f.Pairs = pairs(orgs, agreements)
	for _, p := range f.Pairs {
		f.Partners[p[0]] = append(f.Partners[p[0]], p[1])
		f.Partners[p[1]] = append(f.Partners[p[1]], p[0])
	}
	start := time.Now()
	if err := each(ctx, "organisations", orgs, workers, log, func(ctx context.Context, i int) error {
		return f.enrol(ctx, admin, i, issuer, issuerKey)
	}); err != nil {
		return nil, err
	}
	if opts.Import > 0 {
		batches := (len(f.Pairs) + opts.Import - 1) / opts.Import
		// One start for the run: a batch retried after an unknown outcome
		// carries the same terms, so the registry answers it from its
		// request dedup instead of refusing a reused request id.
		now := time.Now().UTC().Truncate(time.Second)
		if err := each(ctx, "agreement imports", batches, workers, log, func(ctx context.Context, i int) error {
			return f.importAgreements(ctx, admin, run, now, i, f.Pairs[i*opts.Import:min((i+1)*opts.Import, len(f.Pairs))])
		}); err != nil {
			return nil, err
		}
	} else if err := each(ctx, "agreements", len(f.Pairs), workers, log, func(ctx context.Context, i int) error {
		return f.agree(ctx, admin, f.Pairs[i])
	}); err != nil {
		return nil, err
	}
	if err := each(ctx, "member nodes", opts.MemberNodes, workers, log, func(ctx context.Context, i int) error {
		_, err := f.enrolMember(ctx, admin, i%orgs)
		return err
	}); err != nil {
		return nil, err
	}
	f.MemberNodes = opts.MemberNodes
	log.Info("preloaded", "organisations", orgs, "agreements", len(f.Pairs), "member_nodes", opts.MemberNodes,
		"workers", workers, "took", time.Since(start).Round(time.Millisecond))
	return f, nil
}

// pairs are n distinct pairs of organisations out of orgs: i with i+1
// (mod orgs) for every i, then i with i+2, and so on (n at most
// orgs*(orgs-1)/2).
func pairs(orgs, n int) [][2]int {
	var out [][2]int
	for d := 1; len(out) < n && d <= orgs/2; d++ {
		for i := 0; i < orgs && len(out) < n; i++ {
			if j := (i + d) % orgs; d < orgs-d || i < j {
				out = append(out, [2]int{i, j})
			}
		}
	}
	return out
}

// progressEvery is how often each logs how far it got.
const progressEvery = 10 * time.Second

// each runs f(i) for i in [0, n) on workers goroutines and logs the
// progress of what (done, rate) every progressEvery.
func each(ctx context.Context, what string, n, workers int, log *slog.Logger, f func(context.Context, int) error) error {
	if n == 0 {
		return nil
	}
	var done atomic.Int64
	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				d := done.Load()
				log.Info("preloading", "what", what, "done", d, "of", n, "per_s", int(float64(d)/time.Since(start).Seconds()))
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for i := range n {
		g.Go(func() error {
			err := retryUnavailable(ctx, func() error { return f(ctx, i) })
			done.Add(1)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	log.Info("preloaded", "what", what, "n", n, "took", time.Since(start).Round(time.Millisecond),
		"per_s", int(float64(n)/time.Since(start).Seconds()))
	return nil
}

// unavailableFor is how long a preload step is retried while the cluster
// answers Unavailable (no leader during an election: a loaded 2-core
// machine can miss a heartbeat).
const unavailableFor = time.Minute

// retryUnavailable calls f again, every 500 ms for up to unavailableFor,
// while it fails with codes.Unavailable; a step that fails half way
// starts over: an organisation's registration that was applied is taken
// as done, an agreement is proposed again (the half-signed one stays
// PENDING), a member node gets a fresh name.
func retryUnavailable(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(unavailableFor)
	for {
		err := f()
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// enrol registers organisation i (declared and attested level 4, passport
// from the bench issuer) and approves it.
func (f *Fixture) enrol(ctx context.Context, admin *client.Client, i int, issuer string, issuerKey ed25519.PrivateKey) error {
	org, key := f.Orgs[i], f.keys[i]
	now := time.Now()
	passport, err := attestation.IssuePassport(attestation.PassportClaims{
		Serial: "pp-" + org, IssuerID: issuer, OrganizationID: org,
		OrganizationKey: key.Public().(ed25519.PublicKey), Level: 4, Jurisdiction: "EU",
		IssuedAt: now.Add(-time.Hour), NotBefore: now.Add(-time.Hour), ExpiresAt: now.Add(365 * 24 * time.Hour),
	}, issuerKey)
	if err != nil {
		return fmt.Errorf("passport of %s: %w", org, err)
	}
	reg, err := proto.MarshalOptions{Deterministic: true}.Marshal(&trustfedv1.Registration{
		OrganizationId: org, Name: "Bench " + org, Jurisdiction: "EU", DeclaredLevel: 4,
		PublicKey:             key.Public().(ed25519.PublicKey),
		ControlProfile:        &trustfedv1.ControlProfile{Logging: &trustfedv1.Logging{Detail: trustfedv1.LogDetail_LOG_DETAIL_SUMMARY}},
		NotificationEndpoints: []string{"https://" + org + ".example/trustfed"},
		Passport:              passport,
		Nonce:                 fmt.Sprintf("nonce-%s-%d", org, now.UnixNano()),
	})
	if err != nil {
		return fmt.Errorf("registration of %s: %w", org, err)
	}
	// AlreadyExists: a retry (retryUnavailable) of a registration that was
	// applied; the name carries this run's random id, so it is ours.
	if _, err := admin.Membership().RegisterOrganization(ctx, &trustfedv1.RegisterOrganizationRequest{
		Registration: reg, Signature: attestation.Sign(key, attestation.PurposeRegistration, reg)}); err != nil && status.Code(err) != codes.AlreadyExists {
		return fmt.Errorf("register %s: %w", org, err)
	}
	if _, err := admin.Admin().ApproveOrganization(ctx, &trustfedv1.ApproveOrganizationRequest{OrganizationId: org}); err != nil {
		return fmt.Errorf("approve %s: %w", org, err)
	}
	return nil
}

// agree proposes the agreement of a pair (covering Action, for a day) and
// has both sign it.
func (f *Fixture) agree(ctx context.Context, admin *client.Client, pair [2]int) error {
	a, b := f.Orgs[pair[0]], f.Orgs[pair[1]]
	now := time.Now().UTC().Truncate(time.Second)
	p, err := admin.Membership().ProposeAgreement(ctx, &trustfedv1.ProposeAgreementRequest{
		OrganizationAId: a, OrganizationBId: b,
		Scope:     &trustfedv1.AgreementScope{AllowedActions: []string{Action}},
		NotBefore: timestamppb.New(now.Add(-time.Minute)), NotAfter: timestamppb.New(now.Add(24 * time.Hour)),
	})
	if err != nil {
		return fmt.Errorf("propose the agreement of %s and %s: %w", a, b, err)
	}
	for _, i := range pair {
		if _, err := admin.Membership().SignAgreement(ctx, &trustfedv1.SignAgreementRequest{AgreementId: p.Agreement.Id, OrganizationId: f.Orgs[i],
			Signature: attestation.Sign(f.keys[i], attestation.PurposeAgreement, p.Agreement.Terms)}); err != nil {
			return fmt.Errorf("%s signs agreement %s: %w", f.Orgs[i], p.Agreement.Id, err)
		}
	}
	return nil
}

// importAgreements imports the agreements of pairs (as agree makes them)
// in one ImportAgreements call, batch of this run: the agreement ids and
// the request id are derived from the run, the batch and the pair, so a
// retry after an unknown outcome sends the same request (answered from the
// registry's request dedup instead of importing twice).
func (f *Fixture) importAgreements(ctx context.Context, admin *client.Client, run string, now time.Time, batch int, pairs [][2]int) error {
	req := &trustfedv1.ImportAgreementsRequest{RequestId: fmt.Sprintf("bench-import-%s-%d", run, batch)}
	for _, p := range pairs {
		a, b := f.Orgs[p[0]], f.Orgs[p[1]]
		sum := sha256.Sum256([]byte("bench agreement\x00" + a + "\x00" + b))
		terms, err := proto.MarshalOptions{Deterministic: true}.Marshal(&trustfedv1.AgreementTerms{
			AgreementId: "agr-" + hex.EncodeToString(sum[:8]), OrganizationAId: a, OrganizationBId: b,
			Scope:     &trustfedv1.AgreementScope{AllowedActions: []string{Action}},
			NotBefore: timestamppb.New(now.Add(-time.Minute)), NotAfter: timestamppb.New(now.Add(24 * time.Hour)),
			// As ProposeAgreement writes them.
			Termination: &trustfedv1.TerminationConditions{OnPassportExpiry: true, OnPartyRevokedOrSuspended: true},
		})
		if err != nil {
			return fmt.Errorf("terms of %s and %s: %w", a, b, err)
		}
		req.Agreements = append(req.Agreements, &trustfedv1.SignedAgreement{Terms: terms,
			SignatureA: attestation.Sign(f.keys[p[0]], attestation.PurposeAgreement, terms),
			SignatureB: attestation.Sign(f.keys[p[1]], attestation.PurposeAgreement, terms)})
	}
	// A batch that outlives the client's per-call timeout on a loaded
	// machine may still commit: send the same request again (its request
	// id makes the retry an answer, not a second import).
	for attempt := 1; ; attempt++ {
		_, err := admin.Admin().ImportAgreements(ctx, req)
		if err == nil {
			return nil
		}
		if status.Code(err) != codes.DeadlineExceeded || attempt == importAttempts || ctx.Err() != nil {
			return fmt.Errorf("import agreements batch %d (%d agreements): %w", batch, len(pairs), err)
		}
	}
}

// importAttempts bounds how often one import batch is sent after timeouts.
const importAttempts = 5

// enrolMember enrols a new member node of organisation i (signed with its
// key, through admin) and returns its id and private key.
func (f *Fixture) enrolMember(ctx context.Context, admin *client.Client, i int) (member, error) {
	org := f.Orgs[i]
	node := "node-" + randomID() + randomID()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return member{}, err
	}
	req, err := client.NewMemberEnrolment(f.keys[i], org, node, pub, time.Now())
	if err != nil {
		return member{}, fmt.Errorf("enrol member %s/%s: %w", org, node, err)
	}
	if _, err := admin.Access().EnrolMemberNode(ctx, req); err != nil {
		return member{}, fmt.Errorf("enrol member %s/%s: %w", org, node, err)
	}
	return member{org: org, node: node, key: key}, nil
}

// member is an enrolled member node.
type member struct {
	org, node string
	key       ed25519.PrivateKey
}

// Member enrols a new member node of organisation i (signed with its key,
// through admin) and returns its client certificate.
func (f *Fixture) Member(ctx context.Context, admin *client.Client, i int) (tls.Certificate, error) {
	m, err := f.enrolMember(ctx, admin, i)
	if err != nil {
		return tls.Certificate{}, err
	}
	org, node, key := m.org, m.node, m.key
	cert, _, err := client.RequestMemberCertificate(ctx, admin, org, node, key, 0)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate of member %s/%s: %w", org, node, err)
	}
	return cert, nil
}

// randomID is 8 lowercase hex digits.
func randomID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
