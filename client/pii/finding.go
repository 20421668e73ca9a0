package pii

import (
	"fmt"
	"strings"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Type is one PII type of the API.
type Type = trustfedv1.PiiType

// Action is what happens to a finding of a type.
type Action = trustfedv1.PiiAction

// The actions, for brevity.
const (
	ActionPass   = trustfedv1.PiiAction_PII_ACTION_PASS
	ActionHash   = trustfedv1.PiiAction_PII_ACTION_HASH
	ActionRedact = trustfedv1.PiiAction_PII_ACTION_REDACT
	ActionBlock  = trustfedv1.PiiAction_PII_ACTION_BLOCK
)

// The 14 detected types.
const (
	Email         = trustfedv1.PiiType_PII_TYPE_EMAIL
	SSN           = trustfedv1.PiiType_PII_TYPE_SSN
	CreditCard    = trustfedv1.PiiType_PII_TYPE_CREDIT_CARD
	APIKey        = trustfedv1.PiiType_PII_TYPE_API_KEY
	JWT           = trustfedv1.PiiType_PII_TYPE_JWT
	AWSKey        = trustfedv1.PiiType_PII_TYPE_AWS_KEY
	Phone         = trustfedv1.PiiType_PII_TYPE_PHONE
	PersonName    = trustfedv1.PiiType_PII_TYPE_PERSON_NAME
	IPAddress     = trustfedv1.PiiType_PII_TYPE_IP_ADDRESS
	PostalAddress = trustfedv1.PiiType_PII_TYPE_POSTAL_ADDRESS
	Password      = trustfedv1.PiiType_PII_TYPE_PASSWORD
	PrivateKey    = trustfedv1.PiiType_PII_TYPE_PRIVATE_KEY
	DatabaseURL   = trustfedv1.PiiType_PII_TYPE_DATABASE_URL
	GitHubToken   = trustfedv1.PiiType_PII_TYPE_GITHUB_TOKEN
)

// numTypes bounds the per-type tables: every detected type is below it.
const numTypes = int(GitHubToken) + 1

// Types lists the detected types in enum order.
var Types = []Type{Email, SSN, CreditCard, APIKey, JWT, AWSKey, Phone, PersonName,
	IPAddress, PostalAddress, Password, PrivateKey, DatabaseURL, GitHubToken}

// typeNames are the short names used in tokens and the thresholds file:
// the enum name without its "PII_TYPE_" prefix.
var typeNames = func() [numTypes]string {
	var n [numTypes]string
	for _, t := range Types {
		n[t] = strings.TrimPrefix(t.String(), "PII_TYPE_")
	}
	return n
}()

// TypeName is the short name of a type ("EMAIL", "CREDIT_CARD"), the one
// used in replacement tokens and in the thresholds file.
func TypeName(t Type) string {
	if t > 0 && int(t) < numTypes {
		return typeNames[t]
	}
	return t.String()
}

// ParseType reads a short name ("EMAIL") or a full enum name
// ("PII_TYPE_EMAIL") into a detected type.
func ParseType(s string) (Type, error) {
	s = strings.TrimPrefix(s, "PII_TYPE_")
	for _, t := range Types {
		if typeNames[t] == s {
			return t, nil
		}
	}
	return 0, fmt.Errorf("unknown PII type %q", s)
}

// Finding is one detected value: its type, its byte span [Start, End) in
// the scanned text, and how confident the detector is (0..1).
type Finding struct {
	Type       Type
	Start, End int
	Confidence float64
}

// Value is the text of the finding.
func (f Finding) Value(text string) string { return text[f.Start:f.End] }

func (f Finding) String() string {
	return fmt.Sprintf("%s[%d:%d]@%.2f", TypeName(f.Type), f.Start, f.End, f.Confidence)
}
