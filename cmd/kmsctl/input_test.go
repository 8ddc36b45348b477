package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
)

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// isUsage reports whether err is a command-line or parameter error: one
// that exits 252 before anything is sent.
func isUsage(err error) bool { return err != nil && fail(io.Discard, err, "", nil) == exitUsage }

// isLocal reports whether err is one that kmsctl finds itself: exit 252 or
// 255 (bad base64 is 255 in the AWS CLI), never a service error.
func isLocal(err error) bool {
	if err == nil {
		return false
	}
	code := fail(io.Discard, err, "", nil)
	return code == exitUsage || code == exitOther
}

func TestLoadBlob(t *testing.T) {
	raw := []byte{0, 1, 2, 0xff, '\n'}
	rawPath := writeFile(t, "raw.bin", raw)
	b64Path := writeFile(t, "b64.txt", []byte("aGVsbG8=\n")) // "hello" with a newline, as `base64` writes it
	for _, tc := range []struct {
		name  string
		value string
		raw   bool
		want  []byte
		fails bool
	}{
		{"base64", "aGVsbG8=", false, []byte("hello"), false},
		{"base64 without padding", "aGVsbG8", false, []byte("hello"), false},
		{"base64 with line breaks", "aGVs\nbG8=", false, []byte("hello"), false},
		{"not base64", "hello!", false, nil, true},
		{"fileb is raw bytes", "fileb://" + rawPath, false, raw, false},
		{"fileb is raw even in raw mode", "fileb://" + rawPath, true, raw, false},
		{"file is base64 text", "file://" + b64Path, false, []byte("hello"), false},
		{"raw-in-base64-out takes text as is", "hello!", true, []byte("hello!"), false},
		{"missing file", "fileb://" + filepath.Join(t.TempDir(), "nope"), false, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := loadBlob("plaintext", tc.value, tc.raw)
			if tc.fails {
				if err == nil || !isLocal(err) {
					t.Fatalf("loadBlob(%q) = %q, %v; want a local error", tc.value, got, err)
				}
				return
			}
			if err != nil || string(got) != string(tc.want) {
				t.Fatalf("loadBlob(%q) = %q, %v; want %q", tc.value, got, err, tc.want)
			}
		})
	}
}

func TestLoadText(t *testing.T) {
	path := writeFile(t, "policy.json", []byte(`{"Version":"2012-10-17"}`))
	if got, err := loadText("policy", "file://"+path); err != nil || got != `{"Version":"2012-10-17"}` {
		t.Fatalf("file:// = %q, %v", got, err)
	}
	if got, err := loadText("policy", "fileb://"+path); err != nil || got != `{"Version":"2012-10-17"}` {
		t.Fatalf("fileb:// = %q, %v", got, err)
	}
	if got, err := loadText("description", "plain words"); err != nil || got != "plain words" {
		t.Fatalf("inline = %q, %v", got, err)
	}
	if _, err := loadText("policy", "file:///does/not/exist"); !isUsage(err) {
		t.Fatalf("missing file: %v, want a usage error", err)
	}
}

func TestParseEncryptionContext(t *testing.T) {
	for _, tc := range []struct {
		in    string
		want  map[string]string
		fails bool
	}{
		{"", map[string]string{}, false},
		{"   ", map[string]string{}, false},
		{"k=v", map[string]string{"k": "v"}, false},
		{"purpose=test,dept=IT", map[string]string{"purpose": "test", "dept": "IT"}, false},
		{" a = b , c=d ", map[string]string{"a": "b", "c": "d"}, false},
		{"k=a=b==", map[string]string{"k": "a=b=="}, false},
		{"k=", map[string]string{"k": ""}, false},
		{`k="a,b=c"`, map[string]string{"k": "a,b=c"}, false},
		{`"my key"='it''s'`, nil, true},
		{`"my key"='x y'`, map[string]string{"my key": "x y"}, false},
		{`k="say \"hi\"",j='c\\d'`, map[string]string{"k": `say "hi"`, "j": `c\d`}, false},
		{`{"k":"v","n":"m"}`, map[string]string{"k": "v", "n": "m"}, false},
		{` {"k": "v"} `, map[string]string{"k": "v"}, false},
		{`{}`, map[string]string{}, false},
		{`{"k":1}`, nil, true},
		{`{"k":"v"`, nil, true},
		{"k", nil, true},
		{"=v", nil, true},
		{"k=v,", nil, true},
		{"k=v,,j=w", nil, true},
		{"k=v,k=w", nil, true},
		{`k="unterminated`, nil, true},
		{`k="a"b`, nil, true},
	} {
		got, err := parseEncryptionContext(tc.in)
		if tc.fails {
			if err == nil {
				t.Errorf("parse(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("parse(%q): %v", tc.in, err)
			continue
		}
		if len(got) != len(tc.want) || (len(got) > 0 && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("parse(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestFormatEncryptionContext(t *testing.T) {
	for _, tc := range []struct {
		in   map[string]string
		want string
	}{
		{nil, ""},
		{map[string]string{"b": "2", "a": "1"}, "a=1,b=2"},
		{map[string]string{"k": "a,b"}, `k="a,b"`},
		{map[string]string{"": ""}, `""=""`},
		{map[string]string{`q"\`: "x y"}, `"q\"\\"="x y"`},
		{map[string]string{"{json": "v"}, `"{json"=v`},
	} {
		got := formatEncryptionContext(tc.in)
		if got != tc.want {
			t.Errorf("format(%v) = %q, want %q", tc.in, got, tc.want)
		}
		back, err := parseEncryptionContext(got)
		if err != nil || len(back) != len(tc.in) || (len(back) > 0 && !reflect.DeepEqual(back, tc.in)) {
			t.Errorf("parse(format(%v)) = %v, %v", tc.in, back, err)
		}
	}
}

// FuzzParseEncryptionContext: the parser never panics, and whatever it
// accepts survives format → parse, in shorthand and in JSON.
func FuzzParseEncryptionContext(f *testing.F) {
	for _, s := range []string{"", "k=v", "a=1,b=2", `k="a,b"`, `{"k":"v"}`, `'x y'=" z "`, `k=\`, `"\"=1`, "k=v,", "{", " = "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseEncryptionContext(s)
		if err != nil {
			return
		}
		formatted := formatEncryptionContext(m)
		back, err := parseEncryptionContext(formatted)
		if err != nil {
			t.Fatalf("parse(format(%v)) = %q failed: %v", m, formatted, err)
		}
		if len(back) != len(m) || (len(m) > 0 && !reflect.DeepEqual(back, m)) {
			t.Fatalf("round trip of %v through %q gave %v", m, formatted, back)
		}
		js, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		back, err = parseEncryptionContext(string(js))
		if err != nil {
			t.Fatalf("parse(%s) failed: %v", js, err)
		}
		// JSON cannot carry invalid UTF-8; compare what it can.
		var want map[string]string
		if err := json.Unmarshal(js, &want); err != nil {
			t.Fatal(err)
		}
		if len(back) != len(want) || (len(want) > 0 && !reflect.DeepEqual(back, want)) {
			t.Fatalf("JSON round trip of %v gave %v", m, back)
		}
	})
}

func TestParseTags(t *testing.T) {
	jsonPath := writeFile(t, "tags.json", []byte(`[{"TagKey":"f","TagValue":"file"}]`))
	for _, tc := range []struct {
		name  string
		args  []string
		want  []*kmsv1.Tag
		fails bool
	}{
		{"shorthand", []string{"TagKey=env,TagValue=prod", "TagValue=alice,TagKey=owner"},
			[]*kmsv1.Tag{{TagKey: "env", TagValue: "prod"}, {TagKey: "owner", TagValue: "alice"}}, false},
		{"quoted", []string{`TagKey="a b",TagValue="x,y"`}, []*kmsv1.Tag{{TagKey: "a b", TagValue: "x,y"}}, false},
		{"empty value", []string{"TagKey=k,TagValue="}, []*kmsv1.Tag{{TagKey: "k", TagValue: ""}}, false},
		{"json", []string{`[{"TagKey":"k","TagValue":"v"},{"TagKey":"k2","TagValue":"v2"}]`},
			[]*kmsv1.Tag{{TagKey: "k", TagValue: "v"}, {TagKey: "k2", TagValue: "v2"}}, false},
		{"file", []string{"file://" + jsonPath}, []*kmsv1.Tag{{TagKey: "f", TagValue: "file"}}, false},
		{"missing value", []string{"TagKey=k"}, nil, true},
		{"unknown key", []string{"Key=k,Value=v"}, nil, true},
		{"json missing value", []string{`[{"TagKey":"k"}]`}, nil, true},
		{"bad json", []string{`[{"TagKey":`}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseTags(tc.args)
			if tc.fails {
				if !isUsage(err) {
					t.Fatalf("parseTags(%q) = %v, %v; want a usage error", tc.args, got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d tags, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if got[i].TagKey != tc.want[i].TagKey || got[i].TagValue != tc.want[i].TagValue {
					t.Fatalf("tag %d = %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestParseStringList(t *testing.T) {
	if got, err := parseStringList("tag-keys", []string{"a", "b"}); err != nil || !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("args: %v, %v", got, err)
	}
	if got, err := parseStringList("tag-keys", []string{`["a","b c"]`}); err != nil || !reflect.DeepEqual(got, []string{"a", "b c"}) {
		t.Fatalf("json: %v, %v", got, err)
	}
	if got, err := parseStringList("tag-keys", []string{"a,b"}); err != nil || !reflect.DeepEqual(got, []string{"a,b"}) {
		t.Fatalf("one arg: %v, %v", got, err)
	}
	if _, err := parseStringList("tag-keys", []string{`["a",1]`}); !isUsage(err) {
		t.Fatalf("bad json: %v", err)
	}
}

func TestParseSeconds(t *testing.T) {
	for in, want := range map[string]int64{"2s": 2, "3s": 3, "1m": 60, "2160h": 2160 * 3600, " 5s ": 5} {
		if got, err := parseSeconds("rotation-period", in); err != nil || got != want {
			t.Errorf("parseSeconds(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "2", "abc", "500ms", "1.5s", "0s", "-3s"} {
		if got, err := parseSeconds("rotation-period", in); !isUsage(err) {
			t.Errorf("parseSeconds(%q) = %d, %v; want a usage error", in, got, err)
		}
	}
}

func TestParseTimestamp(t *testing.T) {
	utc := func(s string) time.Time {
		tt, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tt
	}
	for in, want := range map[string]time.Time{
		"2026-11-22T10:15:31Z":             utc("2026-11-22T10:15:31Z"),
		"2026-11-22T10:15:31.123+02:00":    utc("2026-11-22T08:15:31.123Z"),
		"2026-11-22T10:15:31.123000+00:00": utc("2026-11-22T10:15:31.123Z"),
		"2026-11-22T10:15:31":              utc("2026-11-22T10:15:31Z"),
		"2026-11-22 10:15:31":              utc("2026-11-22T10:15:31Z"),
		"2026-11-22":                       utc("2026-11-22T00:00:00Z"),
		"1795342531":                       time.Unix(1795342531, 0),
		"1795342531.5":                     time.Unix(1795342531, 500_000_000),
	} {
		got, err := parseTimestamp("valid-to", in)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTimestamp(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "tomorrow", "2026-13-01", "NaN", "Inf"} {
		if got, err := parseTimestamp("valid-to", in); !isUsage(err) {
			t.Errorf("parseTimestamp(%q) = %v, %v; want a usage error", in, got, err)
		}
	}
}
