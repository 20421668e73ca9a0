package pii_test

import (
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/client/pii"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

var testKey = []byte("agreement-key-0123456789abcdef")

const sample = "Dr. Jane Smith (jane.smith@example.com, SSN 123-45-6789) paid with 4111 1111 1111 1111 from 203.0.113.7."

func TestScanFindsEachTypeInSample(t *testing.T) {
	got := map[pii.Type]string{}
	for _, f := range pii.Scan(sample) {
		got[f.Type] = f.Value(sample)
	}
	require.Equal(t, map[pii.Type]string{
		pii.PersonName: "Jane Smith", pii.Email: "jane.smith@example.com", pii.SSN: "123-45-6789",
		pii.CreditCard: "4111 1111 1111 1111", pii.IPAddress: "203.0.113.7",
	}, got)
}

func TestApplyActions(t *testing.T) {
	p := pii.Policy{pii.Email: pii.ActionHash, pii.SSN: pii.ActionRedact, pii.CreditCard: pii.ActionRedact, pii.PersonName: pii.ActionPass}
	res, err := pii.Apply(sample, p, testKey)
	require.NoError(t, err)
	want := "Dr. Jane Smith (" + pii.HashToken(testKey, pii.Email, "jane.smith@example.com") +
		", SSN [REDACTED:SSN]) paid with [REDACTED:CREDIT_CARD] from 203.0.113.7."
	require.Equal(t, want, res.Text)
	require.Regexp(t, regexp.MustCompile(`^\[HASH:EMAIL:[0-9a-f]{32}\]$`), pii.HashToken(testKey, pii.Email, "x@y.zz"))
	require.Len(t, res.Applied, 5)
	for _, a := range res.Applied {
		require.Equal(t, p.Action(a.Type), a.Action, a.Finding.String())
	}
}

func TestApplyBlockNamesEveryBlockedType(t *testing.T) {
	p := pii.Policy{pii.SSN: pii.ActionBlock, pii.CreditCard: pii.ActionBlock, pii.Email: pii.ActionRedact}
	res, err := pii.Apply(sample, p, nil)
	var be *pii.BlockedError
	require.ErrorAs(t, err, &be)
	require.ErrorIs(t, err, pii.ErrBlocked)
	require.Equal(t, []pii.Type{pii.SSN, pii.CreditCard}, be.Types)
	require.Contains(t, err.Error(), "SSN, CREDIT_CARD")
	require.Equal(t, pii.Result{}, res)

	// A type BLOCK only matters when it is found.
	_, err = pii.Apply("nothing to see here", p, nil)
	require.NoError(t, err)
}

func TestApplyUnknownActionBlocks(t *testing.T) {
	_, err := pii.Apply(sample, pii.Policy{pii.Email: trustfedv1.PiiAction(99)}, testKey)
	require.ErrorIs(t, err, pii.ErrBlocked)
}

func TestApplyHashNeedsKey(t *testing.T) {
	for _, key := range [][]byte{nil, []byte("short")} {
		_, err := pii.Apply("no pii", pii.Policy{pii.Email: pii.ActionHash}, key)
		require.ErrorIs(t, err, pii.ErrHashKey)
	}
}

func TestHashIsNotATruncation(t *testing.T) {
	v := "4111111111111111"
	tok := pii.HashToken(testKey, pii.CreditCard, v)
	require.NotContains(t, tok, v[:6])
	require.NotContains(t, tok, v[len(v)-4:])
}

func TestPolicyForMatchesRegistryReading(t *testing.T) {
	cp := &trustfedv1.ControlProfile{DataHandling: &trustfedv1.DataHandling{PiiRules: []*trustfedv1.PiiRule{
		{Type: pii.PersonName, ByLevel: []trustfedv1.PiiAction{pii.ActionBlock, pii.ActionBlock, pii.ActionRedact, pii.ActionHash, pii.ActionPass}},
		{Type: pii.Email, ByLevel: []trustfedv1.PiiAction{pii.ActionRedact, 0, pii.ActionHash}},
	}}}
	p := pii.PolicyFor(cp, 3)
	require.Equal(t, pii.ActionHash, p.Action(pii.PersonName))
	require.Equal(t, pii.ActionPass, p.Action(pii.Email), "a level the rule leaves out is PASS")
	require.Equal(t, pii.ActionPass, pii.PolicyFor(cp, 1).Action(pii.Email), "UNSPECIFIED is PASS")
	require.Equal(t, pii.ActionPass, p.Action(pii.SSN), "an unlisted type is PASS")
	require.Equal(t, pii.ActionBlock, pii.PolicyFor(cp, 7).Action(pii.Email), "a level outside 0..4 blocks")
	require.Equal(t, pii.ActionPass, pii.PolicyFor(nil, 2).Action(pii.Email))
}

func TestOverlapsResolveDeterministically(t *testing.T) {
	// The DB URL holds an email-shaped "pw@host.tld" and an IP; the URL wins.
	s := "DATABASE_URL=postgres://app:pw@10.1.2.3:5432/ledger and mysql://u:p@db.example.com/x"
	fs := pii.Scan(s)
	require.Len(t, fs, 2)
	for _, f := range fs {
		require.Equal(t, pii.DatabaseURL, f.Type, f.String())
	}
	for range 20 {
		require.Equal(t, fs, pii.Scan(s))
	}
}

func TestTypeNamesRoundTrip(t *testing.T) {
	require.Len(t, pii.Types, 14)
	for _, ty := range pii.Types {
		got, err := pii.ParseType(pii.TypeName(ty))
		require.NoError(t, err)
		require.Equal(t, ty, got)
		require.False(t, strings.HasPrefix(pii.TypeName(ty), "PII_TYPE_"))
	}
	_, err := pii.ParseType("SHOE_SIZE")
	require.Error(t, err)
	require.False(t, errors.Is(err, pii.ErrBlocked))
}

// TestConcurrentScansAgree: scans share pooled buffers; concurrent ones
// give the same findings as sequential ones (run with -race).
func TestConcurrentScansAgree(t *testing.T) {
	recs := loadCorpus(t)[:200]
	want := make([][]pii.Finding, len(recs))
	for i, r := range recs {
		want[i] = pii.Scan(r.Text)
	}
	got := make([][]pii.Finding, len(recs))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(recs); i += 4 {
				got[i] = pii.Scan(recs[i].Text)
			}
		}()
	}
	wg.Wait()
	require.Equal(t, want, got)
}
