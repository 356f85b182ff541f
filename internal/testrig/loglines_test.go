package testrig

import (
	"strings"
	"testing"
)

func TestParseLogLines(t *testing.T) {
	for _, c := range []struct {
		name, log, wantErr string
	}{
		{"clean", `{"a":1,"b":{"c":[1,{"d":2}]}}` + "\n" + `{"a":"x"}` + "\n", ""},
		{"duplicate top-level key", `{"request_id":"1","x":2,"request_id":"1"}`, `key "request_id" written twice`},
		{"duplicate nested key", `{"a":{"b":1,"b":2}}`, `key "b" written twice`},
		{"duplicate in array object", `{"a":[{"k":1,"k":1}]}`, `key "k" written twice`},
		{"same key in sibling objects is fine", `{"a":{"k":1},"b":{"k":1}}`, ""},
		{"not an object", `[1,2]`, "not a JSON object"},
		{"text line", `time=now level=INFO msg=hi`, "log line 1"},
		{"two objects on a line", `{"a":1}{"b":2}`, "data after the object"},
	} {
		lines, err := ParseLogLines(c.log)
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: ParseLogLines = %v; want no error", c.name, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%s: ParseLogLines = %v; want an error containing %q", c.name, err, c.wantErr)
		case c.wantErr == "" && len(lines) == 0:
			t.Errorf("%s: no lines parsed", c.name)
		}
	}
}
