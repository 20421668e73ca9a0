package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// envPrefix starts the environment variable of every server flag:
// TRUSTFED_ + the flag's name in upper case, hyphens as underscores
// (-data-dir: TRUSTFED_DATA_DIR).
const envPrefix = "TRUSTFED_"

// envName is the environment variable of server flag name.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// serverSettings are the settings of `trustfed server` that come from a
// configuration file and the environment: applied under the flags given
// on the command line (flags > environment > file > defaults).
type serverSettings struct {
	fs       *flag.FlagSet
	explicit map[string]bool // set on the command line
	errs     []error
}

// set gives flag name the value from source unless the command line set
// it; a bad value is kept as an error naming where it came from.
func (s *serverSettings) set(source, name, value string) {
	if s.explicit[name] {
		return
	}
	f := s.fs.Lookup(name)
	old := f.Value.String()
	if err := f.Value.Set(value); err != nil {
		_ = f.Value.Set(old) // a failed Set may have zeroed it: keep the value below
		s.errs = append(s.errs, fmt.Errorf("%s: invalid value %q for -%s: want %s", source, value, name, wantOf(f)))
	}
}

// wantOf says what a flag's value must look like.
func wantOf(f *flag.Flag) string {
	typ, _ := flag.UnquoteUsage(f)
	switch typ {
	case "int", "uint", "uint64":
		return "an integer"
	case "float":
		return "a number"
	case "duration":
		return "a duration such as 10s or 5m"
	case "":
		return "true or false"
	}
	return "a " + typ
}

// applyFile reads a YAML configuration file: one mapping whose keys are the
// flag names (data-dir: /var/lib/trustfed), each with a single value. An
// unknown key, a list or map value and a bad value are errors naming the
// key and its line; all of them are reported at once.
func (s *serverSettings) applyFile(path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		s.errs = append(s.errs, fmt.Errorf("-config: %w", err))
		return
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		s.errs = append(s.errs, fmt.Errorf("-config %s: %w", path, err))
		return
	}
	if len(doc.Content) == 0 {
		return // an empty file
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		s.errs = append(s.errs, fmt.Errorf("-config %s:%d: want a mapping of setting names to values (data-dir: /var/lib/trustfed)", path, root.Line))
		return
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		where := fmt.Sprintf("%s:%d: %s", path, k.Line, k.Value)
		switch {
		case k.Value == "config" || k.Value == "validate" || s.fs.Lookup(k.Value) == nil:
			s.errs = append(s.errs, fmt.Errorf("%s: unknown key %q (keys are the flag names of trustfed server, without the dash)", where, k.Value))
		case v.Kind != yaml.ScalarNode:
			s.errs = append(s.errs, fmt.Errorf("%s: want a single value, not a list or a mapping", where))
		default:
			s.set(where, k.Value, v.Value)
		}
	}
}

// applyEnv sets each flag whose TRUSTFED_ variable is set (and not empty).
func (s *serverSettings) applyEnv(getenv func(string) string) {
	var names []string
	s.fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	sort.Strings(names)
	for _, name := range names {
		if name == "config" || name == "validate" {
			continue
		}
		if v := getenv(envName(name)); v != "" {
			s.set(envName(name), name, v)
		}
	}
}

// err is every bad setting, joined.
func (s *serverSettings) err() error { return errors.Join(s.errs...) }
