package registry

import (
	"encoding/base64"
	"strings"
	"unicode/utf8"

	"github.com/trustfed/trustfed/registry/state"
)

const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// pageSize coerces a requested page size into 1..maxPageSize.
func pageSize(n uint32) int {
	switch {
	case n == 0:
		return defaultPageSize
	case n > maxPageSize:
		return maxPageSize
	default:
		return int(n)
	}
}

// Page tokens are the opaque, URL-safe form of the last id returned, behind
// a tag: any base64 string decodes to something, and without the tag a
// garbage token would be taken for an id and answer an empty page.
const pageTokenTag = "tf1:"

func encodePageToken(lastID string) string {
	if lastID == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(pageTokenTag + lastID))
}

func decodePageToken(tok string) (string, error) {
	if tok == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	id, tagged := strings.CutPrefix(string(b), pageTokenTag)
	if err != nil || !tagged || id == "" || len(id) > 128 || !utf8.ValidString(id) {
		return "", state.Invalid("page_token", "is not a token this server returned")
	}
	return id, nil
}

// pageStart checks a list call's optional organisation filter and its page
// token, and returns where the page starts.
func pageStart(org, token string) (string, error) {
	if org != "" {
		if err := state.ValidateOrganizationID("organization_id", org); err != nil {
			return "", err
		}
	}
	return decodePageToken(token)
}

// listArgs is pageStart for a list call with a signed page size; it also
// returns how long the page is.
func listArgs(org string, size int32, token string) (after string, limit int, err error) {
	if size < 0 {
		return "", 0, state.Invalid("page_size", "must not be negative")
	}
	if after, err = pageStart(org, token); err != nil {
		return "", 0, err
	}
	return after, pageSize(uint32(size)), nil
}
