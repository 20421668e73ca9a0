package pii_test

import (
	"errors"
	"testing"

	"github.com/trustfed/trustfed/client/pii"
)

// FuzzScanApply: Scan and Apply never panic, findings are sorted, disjoint,
// inside the text, of a known type, with a confidence in [0, 1]; REDACT and
// HASH always succeed; BLOCK refuses exactly when something was found.
func FuzzScanApply(f *testing.F) {
	for _, s := range []string{sample, "", "@", "eyJ.eyJ.", "-----BEGIN PRIVATE KEY-----", "postgres://", "::", "1.2.3.4",
		"password: ", "4111-1111-1111-1111", "ghp_", "AKIA", "+1 (415) 555-0134", "12 Main St, Springfield, IL 62704", "Dr. A"} {
		f.Add(s)
	}
	key := []byte("fuzz-key-0123456789abcdef")
	f.Fuzz(func(t *testing.T, text string) {
		fs := pii.Scan(text)
		for i, x := range fs {
			if x.Start < 0 || x.End > len(text) || x.Start >= x.End {
				t.Fatalf("span out of bounds: %v in %d bytes", x, len(text))
			}
			if i > 0 && fs[i-1].End > x.Start {
				t.Fatalf("overlap: %v then %v", fs[i-1], x)
			}
			if x.Confidence < 0 || x.Confidence > 1 || pii.TypeName(x.Type) == x.Type.String() {
				t.Fatalf("bad finding %v", x)
			}
		}
		for _, a := range []pii.Action{pii.ActionRedact, pii.ActionHash, pii.ActionPass} {
			res, err := pii.Apply(text, all(a), key)
			if err != nil || len(res.Applied) != len(fs) {
				t.Fatalf("%v: %v, %d applied, %d found", a, err, len(res.Applied), len(fs))
			}
			if a == pii.ActionPass && res.Text != text {
				t.Fatalf("PASS changed the text")
			}
		}
		res, err := pii.Apply(text, all(pii.ActionBlock), key)
		if (len(fs) > 0) != errors.Is(err, pii.ErrBlocked) || (err != nil && res.Text != "") {
			t.Fatalf("BLOCK with %d findings: %v, %q", len(fs), err, res.Text)
		}
	})
}
