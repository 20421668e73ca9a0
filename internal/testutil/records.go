package testutil

import trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"

// Records iterates recs in order, the way audit replay and evidence
// bundles read a log: it returns (nil, false, nil) after the last.
func Records(recs []*trustfedv1.AuditRecord) func() (*trustfedv1.AuditRecord, bool, error) {
	i := 0
	return func() (*trustfedv1.AuditRecord, bool, error) {
		if i == len(recs) {
			return nil, false, nil
		}
		i++
		return recs[i-1], true, nil
	}
}
