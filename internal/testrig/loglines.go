package testrig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// LogLine is one parsed JSON log line.
type LogLine map[string]any

// ParseLogLines parses every line of a JSON log and returns them, or the
// first problem: a line that is not one JSON object, or that writes a key
// twice at any depth (encoding/json keeps the last value silently, while
// Elasticsearch, Loki's JSON stage and others refuse or corrupt the line).
func ParseLogLines(log string) ([]LogLine, error) {
	var out []LogLine
	for i, raw := range strings.Split(strings.TrimRight(log, "\n"), "\n") {
		if raw == "" {
			continue
		}
		if err := checkUniqueKeys(json.NewDecoder(strings.NewReader(raw))); err != nil {
			return out, fmt.Errorf("log line %d: %v: %s", i+1, err, raw)
		}
		var l LogLine
		dec := json.NewDecoder(bytes.NewReader([]byte(raw)))
		dec.UseNumber()
		if err := dec.Decode(&l); err != nil {
			return out, fmt.Errorf("log line %d is not a JSON object: %v: %s", i+1, err, raw)
		}
		out = append(out, l)
	}
	return out, nil
}

// checkUniqueKeys walks one JSON value token by token and fails on a
// repeated key in any object.
func checkUniqueKeys(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("not a JSON object")
	}
	if err := walkValue(dec, tok); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("data after the object")
	}
	return nil
}

func walkValue(dec *json.Decoder, tok json.Token) error {
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return err
			}
			key := k.(string)
			if seen[key] {
				return fmt.Errorf("key %q written twice", key)
			}
			seen[key] = true
			v, err := dec.Token()
			if err != nil {
				return err
			}
			if err := walkValue(dec, v); err != nil {
				return err
			}
		}
		_, err := dec.Token() // '}'
		return err
	case json.Delim('['):
		for dec.More() {
			v, err := dec.Token()
			if err != nil {
				return err
			}
			if err := walkValue(dec, v); err != nil {
				return err
			}
		}
		_, err := dec.Token() // ']'
		return err
	}
	return nil // a scalar
}
