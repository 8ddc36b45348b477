package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
)

// Parameter files, as in the AWS CLI: file:// is read as text, fileb:// as
// raw bytes.
const (
	prefixFile  = "file://"
	prefixFileB = "fileb://"
)

// readParamFile reads a file://PATH or fileb://PATH parameter.
func readParamFile(flag, path, prefix string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, paramf("Error parsing parameter '--%s': Unable to load paramfile %s%s: %v", flag, prefix, path, err)
	}
	return b, nil
}

// loadText is the value of a text parameter: file://PATH (or fileb://PATH)
// is replaced by the file's contents.
func loadText(flag, v string) (string, error) {
	for _, prefix := range []string{prefixFile, prefixFileB} {
		if path, ok := strings.CutPrefix(v, prefix); ok {
			b, err := readParamFile(flag, path, prefix)
			return string(b), err
		}
	}
	return v, nil
}

// loadBlob is the value of a binary parameter: fileb://PATH is the file's
// raw bytes; anything else (inline, or the text of file://PATH) is base64,
// or raw text when raw is set (--plaintext with raw-in-base64-out).
func loadBlob(flag, v string, raw bool) ([]byte, error) {
	if path, ok := strings.CutPrefix(v, prefixFileB); ok {
		return readParamFile(flag, path, prefixFileB)
	}
	if path, ok := strings.CutPrefix(v, prefixFile); ok {
		b, err := readParamFile(flag, path, prefixFile)
		if err != nil {
			return nil, err
		}
		v = string(b)
	}
	if raw {
		return []byte(v), nil
	}
	b, err := decodeBase64(v)
	if err != nil {
		return nil, otherf("Invalid base64: %q (--%s takes base64; use fileb://PATH for raw bytes)", v, flag)
	}
	return b, nil
}

// decodeBase64 decodes standard base64, with or without padding; white
// space (a trailing newline from a file, line breaks) is ignored.
func decodeBase64(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\n' || r == '\r' || r == '\t' {
			return -1
		}
		return r
	}, s)
	if strings.HasSuffix(s, "=") {
		return base64.StdEncoding.Strict().DecodeString(s)
	}
	return base64.RawStdEncoding.Strict().DecodeString(s)
}

// pair is one key=value of AWS shorthand syntax.
type pair struct{ key, value string }

// parseShorthand reads AWS shorthand "k=v,k2=v2". A key or value may be
// quoted with " or ' to hold commas, equals signs or spaces; inside quotes a
// backslash escapes the next character. Unquoted keys and values are
// trimmed of spaces, and an unquoted value may contain '='.
func parseShorthand(s string) ([]pair, error) {
	var out []pair
	i := 0
	skip := func() {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
	}
	skip()
	if i == len(s) {
		return nil, nil
	}
	for {
		skip()
		key, err := shorthandToken(s, &i, "=,")
		if err != nil {
			return nil, err
		}
		if key.s == "" && !key.quoted {
			return nil, fmt.Errorf("expected a key at offset %d", i)
		}
		skip()
		if i == len(s) || s[i] != '=' {
			return nil, fmt.Errorf("expected '=' after key %q", key.s)
		}
		i++
		skip()
		val, err := shorthandToken(s, &i, ",")
		if err != nil {
			return nil, err
		}
		out = append(out, pair{key.s, val.s})
		skip()
		if i == len(s) {
			return out, nil
		}
		if s[i] != ',' {
			return nil, fmt.Errorf("expected ',' at offset %d", i)
		}
		i++
	}
}

type token struct {
	s      string
	quoted bool
}

// shorthandToken reads a quoted token, or an unquoted one up to a byte in
// stop (trailing spaces dropped).
func shorthandToken(s string, i *int, stop string) (token, error) {
	if *i < len(s) && (s[*i] == '"' || s[*i] == '\'') {
		q := s[*i]
		start := *i
		*i++
		var b strings.Builder
		for {
			if *i >= len(s) {
				return token{}, fmt.Errorf("unterminated quote at offset %d", start)
			}
			c := s[*i]
			switch {
			case c == '\\' && *i+1 < len(s):
				b.WriteByte(s[*i+1])
				*i += 2
				continue
			case c == q:
				*i++
				return token{b.String(), true}, nil
			}
			b.WriteByte(c)
			*i++
		}
	}
	start := *i
	for *i < len(s) && !strings.ContainsRune(stop, rune(s[*i])) {
		*i++
	}
	return token{strings.TrimRight(s[start:*i], " \t\r\n"), false}, nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// parseEncryptionContext reads an encryption context in AWS shorthand
// (k=v,k2=v2) or JSON ({"k":"v"}). An empty string is an empty context.
func parseEncryptionContext(s string) (map[string]string, error) {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "{") {
		var m map[string]string
		if err := json.Unmarshal([]byte(t), &m); err != nil {
			return nil, fmt.Errorf("invalid JSON (want an object of strings): %v", err)
		}
		return m, nil
	}
	pairs, err := parseShorthand(s)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		if _, dup := m[p.key]; dup {
			return nil, fmt.Errorf("duplicate key %q", p.key)
		}
		m[p.key] = p.value
	}
	return m, nil
}

// formatEncryptionContext writes a context in the shorthand that
// parseEncryptionContext reads back, keys sorted, quoting where needed.
func formatEncryptionContext(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(shorthandQuote(k))
		b.WriteByte('=')
		b.WriteString(shorthandQuote(m[k]))
	}
	return b.String()
}

// shorthandQuote quotes a key or value unless it is made only of characters
// that need no quoting.
func shorthandQuote(s string) string {
	plain := s != ""
	for i := 0; i < len(s) && plain; i++ {
		c := s[i]
		plain = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("-_./:@+", c) >= 0
	}
	if plain {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// parseTags reads --tags: each argument is shorthand
// "TagKey=k,TagValue=v", or one argument is a JSON list
// [{"TagKey":"k","TagValue":"v"}]; any may be file://PATH.
func parseTags(args []string) ([]*kmsv1.Tag, error) {
	var tags []*kmsv1.Tag
	for _, a := range args {
		a, err := loadText("tags", a)
		if err != nil {
			return nil, err
		}
		if t := strings.TrimSpace(a); strings.HasPrefix(t, "[") {
			var list []struct {
				TagKey   *string `json:"TagKey"`
				TagValue *string `json:"TagValue"`
			}
			if err := json.Unmarshal([]byte(t), &list); err != nil {
				return nil, paramf("Error parsing parameter '--tags': invalid JSON: %v", err)
			}
			for _, e := range list {
				if e.TagKey == nil || e.TagValue == nil {
					return nil, paramf("Error parsing parameter '--tags': each tag needs TagKey and TagValue")
				}
				tags = append(tags, &kmsv1.Tag{TagKey: *e.TagKey, TagValue: *e.TagValue})
			}
			continue
		}
		pairs, err := parseShorthand(a)
		if err != nil {
			return nil, paramf("Error parsing parameter '--tags': %v", err)
		}
		tag := &kmsv1.Tag{}
		var haveKey, haveValue bool
		for _, p := range pairs {
			switch p.key {
			case "TagKey":
				tag.TagKey, haveKey = p.value, true
			case "TagValue":
				tag.TagValue, haveValue = p.value, true
			default:
				return nil, paramf("Error parsing parameter '--tags': unknown key %q (want TagKey and TagValue)", p.key)
			}
		}
		if !haveKey || !haveValue {
			return nil, paramf("Error parsing parameter '--tags': %q needs TagKey=KEY,TagValue=VALUE", a)
		}
		tags = append(tags, tag)
	}
	return tags, nil
}

// parseStringList reads a list of strings (--tag-keys, --grant-tokens):
// the arguments themselves, or one JSON list ["a","b"], maybe from a file.
func parseStringList(flag string, args []string) ([]string, error) {
	if len(args) == 1 {
		a, err := loadText(flag, args[0])
		if err != nil {
			return nil, err
		}
		if t := strings.TrimSpace(a); strings.HasPrefix(t, "[") {
			var list []string
			if err := json.Unmarshal([]byte(t), &list); err != nil {
				return nil, paramf("Error parsing parameter '--%s': invalid JSON list of strings: %v", flag, err)
			}
			return list, nil
		}
		return []string{a}, nil
	}
	return append([]string(nil), args...), nil
}

// parseSeconds reads a raftkms duration extension (--rotation-period 2s):
// a positive Go duration of whole seconds.
func parseSeconds(flag, v string) (int64, error) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return 0, paramf("Error parsing parameter '--%s': %q is not a Go duration (like 2s, 90m, 2160h)", flag, v)
	}
	if d < time.Second || d%time.Second != 0 {
		return 0, paramf("Error parsing parameter '--%s': %v is not a positive whole number of seconds", flag, d)
	}
	return int64(d / time.Second), nil
}

// validToLayouts are the timestamp forms --valid-to accepts besides epoch
// seconds; forms without an offset are UTC.
var validToLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04",
	"2006-01-02",
}

// parseTimestamp reads a timestamp as the AWS CLI does: ISO 8601 / RFC 3339
// or seconds since the epoch (fractions allowed).
func parseTimestamp(flag, v string) (time.Time, error) {
	v = strings.TrimSpace(v)
	if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
	}
	for _, layout := range validToLayouts {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, paramf("Error parsing parameter '--%s': %q is not an ISO 8601 timestamp or epoch seconds", flag, v)
}
