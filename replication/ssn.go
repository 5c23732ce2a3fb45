package replication

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// StrictPlaceholder is the standby name pgha (like Patroni) puts in
// synchronous_standby_names in strict mode when no standby can be
// synchronous: no standby has that name, so every commit waits.
const StrictPlaceholder = "__patroni_strict_sync_replica_placeholder__"

// Names is a parsed synchronous_standby_names.
type Names struct {
	// Quorum is true for "ANY n (...)"; false for "FIRST n (...)", "n (...)"
	// and a plain list.
	Quorum bool
	// Num is how many of Standbys each commit waits for (0 when the list is
	// empty).
	Num int
	// Standbys are the names, as written (unquoted), in the order written.
	// "*" stands for any standby.
	Standbys []string
}

// IsEmpty reports whether commits wait for no standby.
func (n Names) IsEmpty() bool { return n.Num == 0 || len(n.Standbys) == 0 }

// Has reports whether name is listed, compared case-insensitively as
// PostgreSQL compares application names. "*" matches every name.
func (n Names) Has(name string) bool {
	return slices.ContainsFunc(n.Standbys, func(s string) bool { return s == "*" || strings.EqualFold(s, name) })
}

// WaitsForAll reports whether every listed standby must confirm each
// commit (priority mode with Num equal to the number of names), so that
// each of them holds every acknowledged commit.
func (n Names) WaitsForAll() bool {
	return !n.Quorum && n.Num > 0 && n.Num == len(n.Standbys) && !slices.Contains(n.Standbys, "*")
}

// Set returns the listed names in lower case, sorted, without duplicates.
func (n Names) Set() []string {
	out := make([]string, 0, len(n.Standbys))
	for _, s := range n.Standbys {
		out = append(out, strings.ToLower(s))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// String formats the names as pgha writes synchronous_standby_names:
// sorted and quoted where needed; one name alone, "n (a,b)" for priority
// mode (PostgreSQL reads it as FIRST n) and "ANY n (a,b)" for quorum mode;
// "" when empty.
func (n Names) String() string {
	if n.IsEmpty() {
		return ""
	}
	names := slices.Clone(n.Standbys)
	slices.SortFunc(names, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	quoted := make([]string, len(names))
	for i, s := range names {
		quoted[i] = quoteName(s)
	}
	switch {
	case n.Quorum:
		return fmt.Sprintf("ANY %d (%s)", n.Num, strings.Join(quoted, ","))
	case len(quoted) == 1 && n.Num == 1:
		return quoted[0]
	}
	return fmt.Sprintf("%d (%s)", n.Num, strings.Join(quoted, ","))
}

// quoteName double-quotes a standby name unless it is a plain lower-case
// identifier (the keywords FIRST and ANY are always quoted).
func quoteName(s string) string {
	if s == "*" {
		return s
	}
	plain := s != "" && s != "first" && s != "any"
	for i, r := range s {
		if !(r == '_' || (r >= 'a' && r <= 'z') || (i > 0 && (r >= '0' && r <= '9' || r == '$'))) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// ParseNames parses synchronous_standby_names as PostgreSQL does: "" (no
// synchronous standby), a list "a, b" (the first connected one), "n (a,
// b)", "FIRST n (a, b)" or "ANY n (a, b)". Names may be double-quoted.
func ParseNames(s string) (Names, error) {
	toks, err := lexNames(s)
	if err != nil {
		return Names{}, err
	}
	if len(toks) == 0 {
		return Names{}, nil
	}
	var out Names
	i := 0
	method := ""
	if toks[0].kind == tokName && !toks[0].quoted && len(toks) > 1 && toks[1].kind == tokNum {
		switch strings.ToLower(toks[0].text) {
		case "first":
			method = "first"
		case "any":
			method, out.Quorum = "any", true
		}
		if method != "" {
			i = 1
		}
	}
	if toks[i].kind == tokNum {
		n, err := strconv.Atoi(toks[i].text)
		if err != nil || n < 1 {
			return Names{}, fmt.Errorf("synchronous_standby_names %q: the number of synchronous standbys must be at least 1", s)
		}
		out.Num = n
		i++
		if i >= len(toks) || toks[i].kind != tokOpen || toks[len(toks)-1].kind != tokClose {
			return Names{}, fmt.Errorf("synchronous_standby_names %q: expected a parenthesised list after %d", s, n)
		}
		names, err := nameList(s, toks[i+1:len(toks)-1])
		if err != nil {
			return Names{}, err
		}
		out.Standbys = names
		return out, nil
	}
	if method != "" {
		return Names{}, fmt.Errorf("synchronous_standby_names %q: expected a number after %s", s, strings.ToUpper(method))
	}
	names, err := nameList(s, toks)
	if err != nil {
		return Names{}, err
	}
	out.Num, out.Standbys = 1, names
	return out, nil
}

func nameList(src string, toks []token) ([]string, error) {
	var out []string
	for i, t := range toks {
		want := tokName
		if i%2 == 1 {
			want = tokComma
		}
		if t.kind == tokNum && want == tokName {
			t.kind = tokName // a name made of digits
		}
		if t.kind != want {
			return nil, fmt.Errorf("synchronous_standby_names %q: syntax error near %q", src, t.text)
		}
		if want == tokName {
			out = append(out, t.text)
		}
	}
	if len(out) == 0 || len(toks)%2 == 0 {
		return nil, fmt.Errorf("synchronous_standby_names %q: empty or unterminated list of names", src)
	}
	return out, nil
}

type tokKind int

const (
	tokName tokKind = iota
	tokNum
	tokComma
	tokOpen
	tokClose
)

type token struct {
	kind   tokKind
	text   string
	quoted bool
}

func lexNames(s string) ([]token, error) {
	var toks []token
	r := []rune(s)
	for i := 0; i < len(r); {
		c := r[i]
		switch {
		case unicode.IsSpace(c):
			i++
		case c == ',':
			toks = append(toks, token{kind: tokComma, text: ","})
			i++
		case c == '(':
			toks = append(toks, token{kind: tokOpen, text: "("})
			i++
		case c == ')':
			toks = append(toks, token{kind: tokClose, text: ")"})
			i++
		case c == '"':
			var b strings.Builder
			i++
			closed := false
			for i < len(r) {
				if r[i] == '"' {
					if i+1 < len(r) && r[i+1] == '"' {
						b.WriteRune('"')
						i += 2
						continue
					}
					i++
					closed = true
					break
				}
				b.WriteRune(r[i])
				i++
			}
			if !closed {
				return nil, fmt.Errorf("synchronous_standby_names %q: unterminated quoted name", s)
			}
			toks = append(toks, token{kind: tokName, text: b.String(), quoted: true})
		default:
			j := i
			for j < len(r) && !unicode.IsSpace(r[j]) && !strings.ContainsRune(",()\"", r[j]) {
				j++
			}
			w := string(r[i:j])
			k := tokName
			if _, err := strconv.Atoi(w); err == nil {
				k = tokNum
			}
			toks = append(toks, token{kind: k, text: w})
			i = j
		}
	}
	return toks, nil
}
