package state

import (
	"slices"

	"google.golang.org/protobuf/proto"
)

// Tables names every table of the store's schema, sorted.
func Tables() []string {
	var out []string
	for name := range schema().Tables {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// TableRows returns every row of table in s, in primary-key order; proto
// rows are cloned so a caller can compare them after the store moved on.
func TableRows(s *Store, table string) []any {
	it, err := s.db.Load().Txn(false).Get(table, "id")
	mustDo(err)
	var out []any
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if m, ok := raw.(proto.Message); ok {
			raw = proto.Clone(m)
		}
		out = append(out, raw)
	}
	return out
}
