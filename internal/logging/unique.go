package logging

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
)

// Unique wraps h so that every record it writes has each top-level key once
// and every value printable:
//   - a key given again by With replaces the earlier value (the more specific
//     logger wins: component=raft then component=raft-net gives raft-net);
//   - a key of the record that a logger attribute already holds is kept under
//     key_2 (key_3, …), so neither value is lost;
//   - values that are errors or fmt.Stringers are written as their text
//     (a JSON handler would otherwise write a struct with unexported fields
//     as {}).
//
// Wrapping an already unique handler returns it unchanged.
func Unique(h slog.Handler) slog.Handler {
	if u, ok := h.(*uniqueHandler); ok {
		return u
	}
	return &uniqueHandler{inner: h}
}

// UniqueLogger returns l writing through Unique.
func UniqueLogger(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(*uniqueHandler); ok {
		return l
	}
	return slog.New(Unique(l.Handler()))
}

type uniqueHandler struct {
	inner slog.Handler // groups already applied
	attrs []slog.Attr  // logger attributes of the current group, each key once, in first-seen order
}

func (u *uniqueHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return u.inner.Enabled(ctx, l)
}

func (u *uniqueHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := &uniqueHandler{inner: u.inner, attrs: append([]slog.Attr(nil), u.attrs...)}
	for _, a := range as {
		a = printable(a)
		if a.Equal(slog.Attr{}) {
			continue
		}
		if i := indexOf(c.attrs, a.Key); i >= 0 {
			c.attrs[i] = a
			continue
		}
		c.attrs = append(c.attrs, a)
	}
	return c
}

func (u *uniqueHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return u
	}
	// Keys inside the group are a new namespace: hand the attributes
	// collected so far to the inner handler and start afresh.
	return &uniqueHandler{inner: u.inner.WithAttrs(u.attrs).WithGroup(name)}
}

func (u *uniqueHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	attrs := make([]slog.Attr, 0, len(u.attrs)+r.NumAttrs())
	attrs = append(attrs, u.attrs...)
	seen := make(map[string]bool, cap(attrs))
	for _, a := range u.attrs {
		seen[a.Key] = true
	}
	r.Attrs(func(a slog.Attr) bool {
		a = printable(a)
		if a.Equal(slog.Attr{}) {
			return true
		}
		key := a.Key
		for n := 2; seen[key]; n++ {
			key = a.Key + "_" + strconv.Itoa(n)
		}
		a.Key = key
		seen[key] = true
		attrs = append(attrs, a)
		return true
	})
	out.AddAttrs(attrs...)
	return u.inner.Handle(ctx, out)
}

func indexOf(as []slog.Attr, key string) int {
	for i, a := range as {
		if a.Key == key {
			return i
		}
	}
	return -1
}

// printable resolves a value and turns errors and Stringers into text.
func printable(a slog.Attr) slog.Attr {
	a.Value = a.Value.Resolve()
	if a.Value.Kind() != slog.KindAny {
		return a
	}
	switch v := a.Value.Any().(type) {
	case error:
		if v == nil {
			return slog.String(a.Key, "<nil>")
		}
		return slog.String(a.Key, fmt.Sprint(v))
	case fmt.Stringer:
		return slog.String(a.Key, fmt.Sprint(v))
	}
	return a
}
