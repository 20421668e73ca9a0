package server

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/trustfed/trustfed/internal/logging"
)

// newLogger builds the server's logger; a bad level or format is an error
// naming its flag.
func newLogger(level, format string, out io.Writer) (*slog.Logger, error) {
	var errs []error
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		errs = append(errs, fmt.Errorf("-log-level %q: want debug, info, warn or error", level))
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(out, opts)
	case "json":
		h = slog.NewJSONHandler(out, opts)
	default:
		errs = append(errs, fmt.Errorf("-log-format %q: want text or json", format))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return slog.New(logging.Unique(h)), nil
}
