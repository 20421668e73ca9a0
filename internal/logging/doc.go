// Package logging holds the slog handler wrapper every trustfed logger goes
// through: each line carries each key once and every value in printable
// form, whatever the libraries underneath (raft, its transport) pass in.
package logging
