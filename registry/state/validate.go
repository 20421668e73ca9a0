package state

import (
	"unicode"
	"unicode/utf8"

	"github.com/trustfed/trustfed/ids"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// MaxLevel is the highest trust level (PRIVILEGED).
const MaxLevel = 4

// ValidateOrganizationID checks an organisation id; field names the request field.
func ValidateOrganizationID(field, id string) error {
	if id == "" {
		return Invalid(field, "is required")
	}
	if !ids.Organization.Match(id) {
		return Invalid(field, "%q is not a valid organization id (want ^[a-z][a-z0-9-]{1,62}$)", truncate(id))
	}
	return nil
}

// ValidateAgreementID checks an agreement id.
func ValidateAgreementID(field, id string) error {
	if id == "" {
		return Invalid(field, "is required")
	}
	if !ids.Agreement.Match(id) {
		return Invalid(field, "%q is not a valid agreement id (want agr- and 16 hex digits)", truncate(id))
	}
	return nil
}

// ValidateName checks an organisation name: 1..200 printable characters, no
// leading or trailing space.
func ValidateName(field, name string) error {
	if err := validateText(field, name, 200); err != nil {
		return err
	}
	first, _ := utf8.DecodeRuneInString(name)
	last, _ := utf8.DecodeLastRuneInString(name)
	if unicode.IsSpace(first) || unicode.IsSpace(last) {
		return Invalid(field, "has leading or trailing space")
	}
	return nil
}

// validateText checks free text: 1..max characters of valid, printable UTF-8.
func validateText(field, s string, max int) error {
	switch {
	case s == "":
		return Invalid(field, "is required")
	case !utf8.ValidString(s):
		return Invalid(field, "is not valid UTF-8")
	case utf8.RuneCountInString(s) > max:
		return Invalid(field, "is longer than %d characters", max)
	}
	for i, r := range s {
		if !unicode.IsPrint(r) {
			return Invalid(field, "contains a non-printable character at byte %d", i)
		}
	}
	return nil
}

// ValidateLevel checks a trust level 0..4.
func ValidateLevel(field string, level uint32) error {
	if level > MaxLevel {
		return Invalid(field, "%d is out of range 0..%d", level, MaxLevel)
	}
	return nil
}

// ValidateStatus checks an organisation status set by an admin.
func ValidateStatus(field string, s trustfedv1.OrganizationStatus) error {
	if _, ok := trustfedv1.OrganizationStatus_name[int32(s)]; !ok || s == trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_UNSPECIFIED {
		return Invalid(field, "%d is not a valid organization status", int32(s))
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
