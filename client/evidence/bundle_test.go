package evidence

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

func build(t *testing.T, in Input) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, Build(&buf, in, nil))
	return buf.Bytes()
}

// unpack returns the archive's files in order.
func unpack(t *testing.T, archive []byte) []member {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	require.NoError(t, err)
	tr := tar.NewReader(zr)
	var out []member
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		out = append(out, member{name: h.Name, data: data})
	}
}

// repack archives files as Build does (without compressing: faster, and
// the same for Verify).
func repack(t *testing.T, files []member, created time.Time) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, writeArchiveLevel(&buf, created, files, gzip.NoCompression))
	return buf.Bytes()
}

func fileOf(t *testing.T, archive []byte, name string) []byte {
	t.Helper()
	for _, m := range unpack(t, archive) {
		if m.name == name {
			return m.data
		}
	}
	t.Fatalf("no %s in the archive", name)
	return nil
}

func TestBundleBuildAndVerify(t *testing.T) {
	l := newTestLog(t)
	l.populate()
	in := l.input(Filters{})
	in.Total = len(l.entries)
	var calls, lastDone int
	var buf bytes.Buffer
	require.NoError(t, Build(&buf, in, func(done, total int) {
		calls++
		lastDone = done
		require.Equal(t, len(l.entries), total)
	}))
	require.Equal(t, len(l.entries), calls)
	require.Equal(t, len(l.entries), lastDone)
	archive := buf.Bytes()

	var names []string
	for _, m := range unpack(t, archive) {
		names = append(names, m.name)
	}
	require.Equal(t, Files(), names)

	rep, err := Verify(bytes.NewReader(archive), l.vkey)
	require.NoError(t, err)
	require.True(t, rep.KeyPinned)
	require.Equal(t, l.vkey, rep.VerifierKey)
	require.Equal(t, len(l.entries), rep.Entries)
	require.Equal(t, uint64(len(l.entries)), rep.TreeSize)
	require.Equal(t, 2, rep.Decisions)
	require.Equal(t, []string{"acme"}, rep.Cosigners)
	require.Equal(t, []string{l.keyID}, rep.KeyIDs)
	require.Equal(t, 2, rep.Types["DECISION"])
	require.Len(t, rep.Files, len(Files()))
	require.Equal(t, t0.Add(48*time.Hour), rep.Created)

	// Trusting the bundle's own key works, and says so.
	rep, err = Verify(bytes.NewReader(archive), "")
	require.NoError(t, err)
	require.False(t, rep.KeyPinned)
	require.Equal(t, l.vkey, rep.VerifierKey)

	// Another registry's key does not verify it.
	other := newTestLog(t)
	_, err = Verify(bytes.NewReader(archive), other.vkey)
	require.ErrorIs(t, err, ErrBundle)

	// The same input gives the same archive.
	require.Equal(t, archive, build(t, l.input(Filters{})))
}

// artefactBundle is the archive of the test log's populated entries, the
// input of the per-artefact tests below.
func artefactBundle(t *testing.T) []byte {
	t.Helper()
	l := newTestLog(t)
	l.populate()
	return build(t, l.input(Filters{}))
}

// E01: registrations, approvals and passport submissions, each with its
// outcome and the check of its signature; the passport's attested level.
func TestE01RegistrationRecords(t *testing.T) {
	var e01 struct {
		EvidenceID string `json:"evidence_id"`
		Records    []struct {
			Type           string          `json:"type"`
			Outcome        string          `json:"outcome"`
			OrganizationID string          `json:"organization_id"`
			SignatureCheck string          `json:"signature_check"`
			Registration   json.RawMessage `json:"registration"`
			Passport       *passportJSON   `json:"passport"`
		} `json:"records"`
		Count int `json:"count"`
	}
	require.NoError(t, json.Unmarshal(fileOf(t, artefactBundle(t), "E01-registrations.json"), &e01))
	require.Equal(t, "AG783-E01", e01.EvidenceID)
	require.Equal(t, 6, e01.Count) // 2 registrations, 3 approvals (one refused), 1 passport
	require.Equal(t, "REGISTER_ORGANIZATION", e01.Records[0].Type)
	require.Equal(t, "valid", e01.Records[0].SignatureCheck)
	require.NotEmpty(t, e01.Records[0].Registration)
	require.Equal(t, uint32(3), e01.Records[0].Passport.Level)
	require.Equal(t, "SUBMIT_PASSPORT", e01.Records[4].Type)
	require.Equal(t, "valid", e01.Records[4].SignatureCheck)
	require.Equal(t, "refused", e01.Records[5].Outcome)
}

// E02: each agreement with its parties, both signatures and its
// termination.
func TestE02AgreementDocuments(t *testing.T) {
	var e02 struct {
		Summary struct {
			Agreements map[string]agreementSummary `json:"agreements"`
		} `json:"summary"`
	}
	require.NoError(t, json.Unmarshal(fileOf(t, artefactBundle(t), "E02-agreements.json"), &e02))
	ag := e02.Summary.Agreements["agr-0000000000000001"]
	require.Equal(t, "acme", ag.OrganizationAID)
	require.Len(t, ag.Signatures, 2)
	require.Equal(t, "partnership ended", ag.Terminated.Reason)
}

// E03: every decision and level change is a trust level computation
// record.
func TestE03TrustLevelLogs(t *testing.T) {
	var e03 struct {
		Count int `json:"count"`
	}
	require.NoError(t, json.Unmarshal(fileOf(t, artefactBundle(t), "E03-trust-levels.json"), &e03))
	require.Equal(t, 3, e03.Count) // 2 decisions, 1 level change
}

// E05: every decision is a control resolution record.
func TestE05ControlResolutionLogs(t *testing.T) {
	var e05 struct {
		Count int `json:"count"`
	}
	require.NoError(t, json.Unmarshal(fileOf(t, artefactBundle(t), "E05-control-resolution.json"), &e05))
	require.Equal(t, 2, e05.Count)
}

// E04: each cascade with what started it and, per partner, the attempts
// and the first, last and acknowledgement times.
func TestE04CascadePerPartnerTimestamps(t *testing.T) {
	var e04 struct {
		Records []cascadeRecord `json:"records"`
		Summary struct {
			Cascades map[string]cascadeSummary `json:"cascades"`
		} `json:"summary"`
	}
	require.NoError(t, json.Unmarshal(fileOf(t, artefactBundle(t), "E04-revocation-cascades.json"), &e04))
	require.Equal(t, "TERMINATE_AGREEMENT", e04.Records[0].Cascade.StartedByType)
	require.NotEmpty(t, e04.Records[0].Cascade.StartedBy)
	c := e04.Summary.Cascades["evt-0000000000000001"]
	require.NotNil(t, c.StartedSequence)
	acme := c.Partners["acme"]
	require.Equal(t, uint32(2), acme.Attempts)
	require.NotEmpty(t, acme.AckTime)
	require.NotEqual(t, acme.FirstAttemptTime, acme.LastAttemptTime)
}

// E06: the summary of the whole trail (every entry counted) and how to
// verify it.
func TestE06AuditTrailSummary(t *testing.T) {
	l := newTestLog(t)
	l.populate()
	var e06 struct {
		Summary trailSummary `json:"summary"`
	}
	require.NoError(t, json.Unmarshal(fileOf(t, build(t, l.input(Filters{})), "E06-audit-trail.json"), &e06))
	require.Equal(t, len(l.entries), e06.Summary.EntryCount)
	require.Equal(t, 1, e06.Summary.Decisions["ALLOW"])
	require.Equal(t, 1, e06.Summary.RefusedCommands)
	require.NotEmpty(t, e06.Summary.HowToVerify)
}

// E07: the refused attempts the registry saw (authentication failures,
// refused commands, corrupt commands, denials by cause); the note says the
// adversarial test reports themselves come from continuous integration.
func TestE07RefusedAttempts(t *testing.T) {
	var e07 struct {
		Note    string         `json:"note"`
		Count   int            `json:"count"`
		Summary refusedSummary `json:"summary"`
	}
	require.NoError(t, json.Unmarshal(fileOf(t, artefactBundle(t), "E07-refused-attempts.json"), &e07))
	require.Contains(t, e07.Note, "continuous integration")
	require.Equal(t, 3, e07.Count) // the auth failure, the refused approval, the corrupt command
	require.Equal(t, 1, e07.Summary.AuthFailuresByCode["PermissionDenied"])
	require.Equal(t, 1, e07.Summary.DeniedDecisionsByCause["LEVEL_TOO_LOW"])
}

// Any one-byte change of any file of the archive makes Verify fail.
func TestBundleEveryFileEditFails(t *testing.T) {
	l := newTestLog(t)
	l.populate()
	in := l.input(Filters{})
	archive := build(t, in)
	files := unpack(t, archive)
	for fi, f := range files {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			positions, flips := spread(len(f.data), 40), []byte{0x01, 0x20}
			if f.name == FileManifest || f.name == FileKeys {
				positions, flips = spread(len(f.data), len(f.data)), []byte{0x01} // every byte
			}
			for _, pos := range positions {
				for _, flip := range flips {
					edited := append([]member(nil), files...)
					data := bytes.Clone(f.data)
					data[pos] ^= flip
					edited[fi] = member{name: f.name, data: data}
					_, err := Verify(bytes.NewReader(repack(t, edited, in.Created)), l.vkey)
					require.ErrorIs(t, err, ErrBundle, "%s byte %d ^ %#x (%q) went unnoticed", f.name, pos, flip, f.data[pos])
				}
			}
		})
	}
	// Unchanged, the repacked files verify: the edits above are what failed.
	_, err := Verify(bytes.NewReader(repack(t, files, in.Created)), l.vkey)
	require.NoError(t, err)
}

// spread is n positions spread over [0, size), the first and last included.
func spread(size, n int) []int {
	if n >= size {
		out := make([]int, size)
		for i := range out {
			out[i] = i
		}
		return out
	}
	out := make([]int, n)
	for i := range out {
		out[i] = i * (size - 1) / (n - 1)
	}
	return out
}

// A changed byte of the gzip stream, or a changed archive around the
// files, makes Verify fail too.
func TestBundleArchiveEditFails(t *testing.T) {
	l := newTestLog(t)
	l.populate()
	in := l.input(Filters{})
	archive := build(t, in)
	n := len(archive)
	positions := append(spread(10, 10), spread(n, 64)...)
	for i := n - 8; i < n; i++ { // the CRC and size trailer
		positions = append(positions, i)
	}
	for _, pos := range positions {
		edited := bytes.Clone(archive)
		edited[pos] ^= 0xff
		_, err := Verify(bytes.NewReader(edited), l.vkey)
		require.ErrorIs(t, err, ErrBundle, "gzip byte %d of %d went unnoticed", pos, n)
	}
	_, err := Verify(bytes.NewReader(append(bytes.Clone(archive), 0)), l.vkey)
	require.ErrorIs(t, err, ErrBundle, "a byte after the gzip stream")
	_, err = Verify(bytes.NewReader(archive[:n-1]), l.vkey)
	require.ErrorIs(t, err, ErrBundle, "a truncated archive")

	files := unpack(t, archive)
	rewrite := func(what string, fn func(tw *tar.Writer)) {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		fn(tw)
		require.NoError(t, tw.Close())
		require.NoError(t, zw.Close())
		_, err := Verify(bytes.NewReader(buf.Bytes()), l.vkey)
		require.ErrorIs(t, err, ErrBundle, what)
	}
	put := func(tw *tar.Writer, h *tar.Header, data []byte) {
		require.NoError(t, tw.WriteHeader(h))
		_, err := tw.Write(data)
		require.NoError(t, err)
	}
	rewrite("another file time", func(tw *tar.Writer) {
		for _, f := range files {
			h := tarHeader(f.name, int64(len(f.data)), in.Created.Add(time.Second))
			put(tw, h, f.data)
		}
	})
	rewrite("another file mode", func(tw *tar.Writer) {
		for _, f := range files {
			h := tarHeader(f.name, int64(len(f.data)), in.Created)
			h.Mode = 0o600
			put(tw, h, f.data)
		}
	})
	rewrite("an extra file", func(tw *tar.Writer) {
		for _, f := range files {
			put(tw, tarHeader(f.name, int64(len(f.data)), in.Created), f.data)
		}
		put(tw, tarHeader("notes.txt", 2, in.Created), []byte("hi"))
	})
	rewrite("files in another order", func(tw *tar.Writer) {
		for i := len(files) - 1; i >= 0; i-- {
			put(tw, tarHeader(files[i].name, int64(len(files[i].data)), in.Created), files[i].data)
		}
	})
	rewrite("a missing file", func(tw *tar.Writer) {
		for _, f := range files[:len(files)-1] {
			put(tw, tarHeader(f.name, int64(len(f.data)), in.Created), f.data)
		}
	})

	// The same files compressed differently are the same evidence.
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, 5)
	require.NoError(t, err)
	raw, err := io.ReadAll(must(gzip.NewReader(bytes.NewReader(archive))))
	require.NoError(t, err)
	_, err = zw.Write(raw)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	require.NotEqual(t, archive, buf.Bytes())
	_, err = Verify(&buf, l.vkey)
	require.NoError(t, err)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// A bundle rebuilt by someone without the registry key, from altered
// entries, does not verify.
func TestBundleForgeries(t *testing.T) {
	t.Run("decision not signed by the registry", func(t *testing.T) {
		l := newTestLog(t)
		l.populate()
		forger := newTestLog(t)
		l.decision(&trustfedv1.DecisionStatement{FromOrganizationId: "acme", ToOrganizationId: "globex", Action: "agent_spawn",
			Decision: trustfedv1.Decision_DECISION_ALLOW, EffectiveLevel: 4, FromLevel: 4, ToLevel: 4, RequiredLevel: 4}, forger.key)
		archive := build(t, l.input(Filters{}))
		_, err := Verify(bytes.NewReader(archive), l.vkey)
		require.ErrorIs(t, err, ErrBundle)
		require.ErrorContains(t, err, "registry signature")
	})
	t.Run("entry changed after the checkpoint", func(t *testing.T) {
		l := newTestLog(t)
		l.populate()
		sth := l.treeHead()
		recs := l.records(Filters{}, sth.TreeSize)
		e := proto.CloneOf(recs[1].Entry)
		e.Error = "refused after all"
		recs[1] = &trustfedv1.AuditRecord{Sequence: 1, Leaf: marshal(t, e), InclusionProof: recs[1].InclusionProof}
		err := Build(io.Discard, Input{TreeHead: sth, Keys: l.keys(), Next: testutil.Records(recs)}, nil)
		require.ErrorIs(t, err, ErrBundle)
	})
	t.Run("entries outside the filters", func(t *testing.T) {
		l := newTestLog(t)
		l.populate()
		in := l.input(Filters{})
		in.Filters = Filters{OrganizationID: "acme"}
		require.ErrorIs(t, Build(io.Discard, in, nil), ErrBundle)
	})
	t.Run("manifest filters changed and its digest recomputed", func(t *testing.T) {
		l := newTestLog(t)
		l.populate()
		in := l.input(Filters{})
		files := unpack(t, build(t, in))
		var m manifest
		require.NoError(t, json.Unmarshal(files[0].data, &m))
		m.Filters.OrganizationID = "acme"
		data, err := m.render()
		require.NoError(t, err)
		files[0].data = data
		_, err = Verify(bytes.NewReader(repack(t, files, in.Created)), l.vkey)
		require.ErrorIs(t, err, ErrBundle)
	})
}

func TestBundleFiltered(t *testing.T) {
	l := newTestLog(t)
	l.populate()
	for _, f := range []Filters{
		{OrganizationID: "globex"},
		{Compliance: trustfedv1.ComplianceMode_COMPLIANCE_MODE_HIPAA},
		{Since: t0.Add(10 * time.Minute), Until: t0.Add(14 * time.Minute)},
		{OrganizationID: "nobody"},
	} {
		t.Run(fmt.Sprintf("%+v", f.render()), func(t *testing.T) {
			in := l.input(f)
			want := len(l.records(f, uint64(len(l.entries))))
			rep, err := Verify(bytes.NewReader(build(t, in)), l.vkey)
			require.NoError(t, err)
			require.Equal(t, want, rep.Entries)
			require.Equal(t, f.render(), rep.Filters.render())
		})
	}
}
