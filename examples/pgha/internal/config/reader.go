package config

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// section reads one mapping of the raw configuration and remembers which
// keys were read, so that the rest can be reported as unknown.
type section struct {
	path string
	m    map[string]any
	used map[string]bool
	d    *decoder
}

// decoder collects problems while the sections are read.
type decoder struct {
	src      *sources
	problems []Problem
}

func (d *decoder) add(sev Severity, key, format string, args ...any) {
	d.problems = append(d.problems, Problem{Severity: sev, Key: key, Source: d.src.of(key), Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) warn(key, format string, args ...any) { d.add(Warning, key, format, args...) }
func (d *decoder) fail(key, format string, args ...any) { d.add(Error, key, format, args...) }

func (d *decoder) root(m map[string]any) *section {
	return &section{m: m, used: map[string]bool{}, d: d}
}

func (s *section) key(k string) string { return join(s.path, k) }

// has reports whether the key is present (even with a null value).
func (s *section) has(k string) bool {
	_, ok := s.m[k]
	return ok
}

// get returns the value and marks the key as read.
func (s *section) get(k string) (any, bool) {
	s.used[k] = true
	v, ok := s.m[k]
	if !ok || v == nil {
		return nil, false
	}
	return v, true
}

// sub returns a nested section; a missing key gives an empty section, a
// value that is not a mapping an error.
func (s *section) sub(k string) *section {
	child := &section{path: s.key(k), m: map[string]any{}, used: map[string]bool{}, d: s.d}
	v, ok := s.get(k)
	if !ok {
		return child
	}
	m, isMap := v.(map[string]any)
	if !isMap {
		s.d.fail(s.key(k), "must be a mapping of keys to values, not %s", describe(v))
		return child
	}
	child.m = m
	return child
}

// present is true when the section exists in the file.
func (s *section) present() bool { return len(s.m) > 0 }

func (s *section) str(k string) string {
	v, ok := s.get(k)
	if !ok {
		return ""
	}
	switch t := v.(type) {
	case string:
		return t
	case int, int64, uint64, float64, bool:
		return scalarString(t)
	}
	s.d.fail(s.key(k), "must be a single value, not %s", describe(v))
	return ""
}

func (s *section) boolean(k string) (val, ok bool) {
	v, present := s.get(k)
	if !present {
		return false, false
	}
	b, good := parseBool(v)
	if !good {
		s.d.fail(s.key(k), "must be true or false, not %s", describe(v))
		return false, false
	}
	return b, true
}

func (s *section) integer(k string) (int, bool) {
	v, present := s.get(k)
	if !present {
		return 0, false
	}
	n, good := parseInt(v)
	if !good {
		s.d.fail(s.key(k), "must be an integer, not %s", describe(v))
		return 0, false
	}
	return n, true
}

// strList reads a list of strings, or a comma-separated string.
func (s *section) strList(k string) []string {
	v, ok := s.get(k)
	if !ok {
		return nil
	}
	switch t := v.(type) {
	case string:
		var out []string
		for _, p := range strings.Split(t, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out
	case []any:
		out := make([]string, 0, len(t))
		for i, x := range t {
			switch x.(type) {
			case string, int, int64, float64, bool:
				out = append(out, scalarString(x))
			default:
				s.d.fail(fmt.Sprintf("%s[%d]", s.key(k), i), "must be a single value, not %s", describe(x))
			}
		}
		return out
	}
	s.d.fail(s.key(k), "must be a list or a comma-separated string, not %s", describe(v))
	return nil
}

// strMap reads a mapping of names to single values.
func (s *section) strMap(k string) map[string]string {
	sub := s.sub(k)
	out := map[string]string{}
	for name := range sub.m {
		out[name] = sub.str(name)
	}
	return out
}

// notImplemented marks a known key that pgha does not honour yet, with a
// warning when it is set.
func (s *section) notImplemented(k, what string) {
	if v, ok := s.get(k); ok {
		if what == "" {
			what = "ignored"
		}
		s.d.warn(s.key(k), "not implemented yet (%s); value %s", what, brief(v))
	}
}

// ignored marks a known key that has no meaning for pgha, with a warning.
func (s *section) ignored(k, why string) {
	if _, ok := s.get(k); ok {
		s.d.warn(s.key(k), "ignored: %s", why)
	}
}

// accepted marks a known key that needs no action, silently.
func (s *section) accepted(keys ...string) {
	for _, k := range keys {
		s.used[k] = true
	}
}

// done reports every key that was not read as unknown.
func (s *section) done() {
	var keys []string
	for k := range s.m {
		if !s.used[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		s.d.warn(s.key(k), "unknown key, ignored (not a Patroni setting in this section)")
	}
}

func describe(v any) string {
	switch v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case nil:
		return "nothing"
	}
	return fmt.Sprintf("%q", scalarString(v))
}

func brief(v any) string {
	s := fmt.Sprint(v)
	if m, ok := v.(map[string]any); ok {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		s = "{" + strings.Join(keys, ", ") + "}"
	}
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

// scalarString renders a YAML scalar as text: booleans as true/false,
// whole floats without a fraction or exponent.
func scalarString(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case bool:
		if t {
			return "true"
		}
		return "false"
	case int:
		return strconv.Itoa(t)
	case int64:
		return strconv.FormatInt(t, 10)
	case uint64:
		return strconv.FormatUint(t, 10)
	case float64:
		if t == math.Trunc(t) && math.Abs(t) < 1e15 {
			return strconv.FormatInt(int64(t), 10)
		}
		return strconv.FormatFloat(t, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

// parseBool follows Patroni's parse_bool: true/false, on/off, yes/no, 1/0
// (any case).
func parseBool(v any) (bool, bool) {
	switch t := v.(type) {
	case bool:
		return t, true
	case int:
		if t == 0 || t == 1 {
			return t == 1, true
		}
	case string:
		switch strings.ToLower(strings.TrimSpace(t)) {
		case "true", "on", "yes", "1", "y":
			return true, true
		case "false", "off", "no", "0", "n":
			return false, true
		}
	}
	return false, false
}

func parseInt(v any) (int, bool) {
	switch t := v.(type) {
	case int:
		return t, true
	case int64:
		return int(t), true
	case float64:
		if t == math.Trunc(t) {
			return int(t), true
		}
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(t))
		return n, err == nil
	}
	return 0, false
}
