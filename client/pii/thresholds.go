package pii

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
)

// ErrThresholds is wrapped by every error about a thresholds value or file.
var ErrThresholds = errors.New("invalid PII thresholds")

// Thresholds are the per-type confidence thresholds: a finding is reported
// only at or above its type's. The zero value is not useful; start from
// DefaultThresholds.
type Thresholds struct {
	v [numTypes]float64
}

// defaultThreshold is the threshold of every type unless set: high enough
// that context-free guesses (a bare high-entropy token, a dotted quad after
// "version", a first name alone) stay below it.
const defaultThreshold = 0.6

// DefaultThresholds are the thresholds the package ships with.
func DefaultThresholds() Thresholds {
	var t Thresholds
	for _, ty := range Types {
		t.v[ty] = defaultThreshold
	}
	return t
}

// Get is the threshold of a type; an unknown type never reports.
func (t Thresholds) Get(ty Type) float64 {
	if ty <= 0 || int(ty) >= numTypes {
		return math.Inf(1)
	}
	return t.v[ty]
}

// Set overrides the threshold of a type with a value in [0, 1].
func (t *Thresholds) Set(ty Type, v float64) error {
	if ty <= 0 || int(ty) >= numTypes {
		return fmt.Errorf("%w: type %d is not a detected PII type", ErrThresholds, ty)
	}
	if math.IsNaN(v) || v < 0 || v > 1 {
		return fmt.Errorf("%w: thresholds[%q]: %v is not within [0, 1]", ErrThresholds, TypeName(ty), v)
	}
	t.v[ty] = v
	return nil
}

// thresholdsFileVersion is the only version of the file format.
const thresholdsFileVersion = 1

// thresholdsFile is the JSON form: {"version": 1, "thresholds": {"EMAIL": 0.8}}.
// Types not listed keep the default.
type thresholdsFile struct {
	Version    int                        `json:"version"`
	Thresholds map[string]json.RawMessage `json:"thresholds"`
}

// Overrides are the types whose threshold differs from the default.
func (t Thresholds) Overrides() map[Type]float64 {
	d := DefaultThresholds()
	m := make(map[Type]float64)
	for _, ty := range Types {
		if t.v[ty] != d.v[ty] {
			m[ty] = t.v[ty]
		}
	}
	return m
}

// MarshalJSON writes the file form with every override, in type order.
func (t Thresholds) MarshalJSON() ([]byte, error) {
	f := thresholdsFile{Version: thresholdsFileVersion, Thresholds: map[string]json.RawMessage{}}
	for ty, v := range t.Overrides() {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("thresholds[%q]: %w", TypeName(ty), err)
		}
		f.Thresholds[TypeName(ty)] = b
	}
	return json.MarshalIndent(f, "", "  ")
}

// UnmarshalJSON reads the file form, refusing unknown fields, versions,
// types and values outside [0, 1] with an error naming the field.
func (t *Thresholds) UnmarshalJSON(b []byte) error {
	var f thresholdsFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return fmt.Errorf("%w: %w", ErrThresholds, err)
	}
	if f.Version != thresholdsFileVersion {
		return fmt.Errorf("%w: version: %d is not %d", ErrThresholds, f.Version, thresholdsFileVersion)
	}
	out := DefaultThresholds()
	names := make([]string, 0, len(f.Thresholds))
	for name := range f.Thresholds {
		names = append(names, name)
	}
	slices.Sort(names) // the first bad field is always the same one
	for _, name := range names {
		ty, err := ParseType(name)
		if err != nil {
			return fmt.Errorf("%w: thresholds[%q]: %w", ErrThresholds, name, err)
		}
		var v *float64
		if err := json.Unmarshal(f.Thresholds[name], &v); err != nil || v == nil {
			return fmt.Errorf("%w: thresholds[%q]: %s is not a number", ErrThresholds, name, f.Thresholds[name])
		}
		if err := out.Set(ty, *v); err != nil {
			return err
		}
	}
	*t = out
	return nil
}

// LoadThresholds reads a thresholds file. A missing file is an error: the
// caller decides whether to start from DefaultThresholds.
func LoadThresholds(path string) (Thresholds, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Thresholds{}, fmt.Errorf("read PII thresholds: %w", err)
	}
	var t Thresholds
	if err := t.UnmarshalJSON(b); err != nil {
		return Thresholds{}, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// SaveThresholds writes t to path atomically (a temporary file in the same
// directory, synced, then renamed over it).
func SaveThresholds(path string, t Thresholds) error {
	b, err := t.MarshalJSON()
	if err != nil {
		return fmt.Errorf("encode PII thresholds: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".pii-thresholds-*")
	if err != nil {
		return fmt.Errorf("save PII thresholds: %w", err)
	}
	defer os.Remove(f.Name()) // no-op after the rename
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("save PII thresholds: %w", err)
	}
	return nil
}
