package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// CheckJSONLines reads JSON log lines and reports every line that is not a
// JSON object, repeats a key within one object (at any depth), or has a
// value that is an empty object. Decoding into a map would hide repeated
// keys, so it walks the tokens.
func CheckJSONLines(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("read log: %w", err)
	}
	var errs []error
	for n, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		if err := checkObject(json.NewDecoder(bytes.NewReader([]byte(line)))); err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w: %s", n+1, err, line))
		}
	}
	return errors.Join(errs...)
}

// checkObject consumes one JSON value whose first token is next.
func checkObject(d *json.Decoder) error {
	tok, err := d.Token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("not a JSON object")
	}
	_, err = walkObject(d)
	return err
}

// walkObject reads an object's members after its '{' and reports whether
// it was empty.
func walkObject(d *json.Decoder) (empty bool, err error) {
	seen := map[string]bool{}
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return false, err
		}
		key, _ := tok.(string)
		if seen[key] {
			return false, fmt.Errorf("key %q repeated", key)
		}
		seen[key] = true
		if err := walkValue(d, key); err != nil {
			return false, err
		}
	}
	if _, err := d.Token(); err != nil { // '}'
		return false, err
	}
	return len(seen) == 0, nil
}

func walkValue(d *json.Decoder, key string) error {
	tok, err := d.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		empty, err := walkObject(d)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		if empty {
			return fmt.Errorf("key %q has an empty object as its value", key)
		}
	case json.Delim('['):
		for d.More() {
			if err := walkValue(d, key); err != nil {
				return err
			}
		}
		if _, err := d.Token(); err != nil { // ']'
			return err
		}
	}
	return nil
}
