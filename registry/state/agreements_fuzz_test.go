package state

import (
	"bytes"
	"testing"

	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
)

// FuzzAgreementVerification feeds arbitrary terms and signatures to the
// agreement commands: nothing panics, arbitrary terms never create an
// agreement that is not well-formed, and only the party's real signature
// over the stored terms is accepted.
func FuzzAgreementVerification(f *testing.F) {
	good := termsBytes(t0, "agr-0000000000000001", "acme-bank", "st-mary", 0)
	f.Add(good, []byte{})
	f.Add(good[:len(good)/2], []byte("not a signature"))
	f.Add([]byte{0x0a, 0x14}, bytes.Repeat([]byte{1}, 64))
	f.Fuzz(func(t *testing.T, terms, sig []byte) {
		h := newHarness(t)
		h.accredit()
		h.member("acme-bank", 3, 3)
		h.member("st-mary", 3, 3)

		res := h.apply(&commandv1.ProposeAgreement{Terms: terms}, "")
		if res.Err == nil {
			var parsed trustfedv1.AgreementTerms
			ag, ok := h.read().Agreement(agreementIDOf(t, terms, &parsed))
			if !ok || ag.Status != trustfedv1.AgreementStatus_AGREEMENT_STATUS_PENDING || len(parsed.GetScope().GetAllowedActions()) == 0 {
				t.Fatalf("accepted terms made a bad agreement: %v", ag)
			}
		}

		real := h.terms("agr-00000000000000ff", "acme-bank", "st-mary", 0)
		h.must(&commandv1.ProposeAgreement{Terms: real})
		res = h.apply(&commandv1.SignAgreement{AgreementId: "agr-00000000000000ff", OrganizationId: "acme-bank", Signature: sig}, "")
		if res.Err == nil && !bytes.Equal(sig, h.fed.SignTerms("acme-bank", real)) {
			t.Fatalf("a signature that is not acme-bank's over the terms was accepted")
		}
	})
}

func agreementIDOf(t *testing.T, terms []byte, into *trustfedv1.AgreementTerms) string {
	if err := proto.Unmarshal(terms, into); err != nil {
		t.Fatalf("accepted terms do not parse: %v", err)
	}
	return into.AgreementId
}
