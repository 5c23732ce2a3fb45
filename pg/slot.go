package pg

import (
	"strconv"
	"strings"
	"unicode"
)

// MaxSlotNameLen is the longest replication slot name PostgreSQL accepts
// (NAMEDATALEN - 1).
const MaxSlotNameLen = 63

// SlotName returns the physical replication slot name Patroni uses for a
// member (SPEC 8.1): the name is lowercased; '-' and '.' become '_'; every
// other character outside [a-z0-9_] becomes 'u' followed by its Unicode code
// point in decimal, zero-padded to at least 4 digits; the result is cut to 63
// characters. Different member names can map to the same slot name.
//
// Lowercasing follows Python's str.lower, which Patroni uses: it is Unicode
// simple lowercasing except for U+0130 (LATIN CAPITAL LETTER I WITH DOT
// ABOVE), which becomes "i" followed by U+0307 COMBINING DOT ABOVE.
// Invalid UTF-8 bytes are treated as U+FFFD.
func SlotName(member string) string {
	var b strings.Builder
	for _, r := range pythonLower(member) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		case r == '-' || r == '.':
			b.WriteByte('_')
		default:
			b.WriteByte('u')
			n := strconv.Itoa(int(r))
			for i := len(n); i < 4; i++ {
				b.WriteByte('0')
			}
			b.WriteString(n)
		}
		if b.Len() >= MaxSlotNameLen {
			break
		}
	}
	s := b.String()
	if len(s) > MaxSlotNameLen {
		s = s[:MaxSlotNameLen]
	}
	return s
}

// pythonLower lowercases s the way Python 3's str.lower does, which is what
// Patroni runs: Unicode lowercasing plus the two context rules Python applies,
// U+0130 becoming "i" + U+0307, and capital sigma becoming final sigma (ς)
// at the end of a word (Unicode's Final_Sigma condition).
func pythonLower(s string) []rune {
	in := []rune(s)
	out := make([]rune, 0, len(in))
	for i, r := range in {
		switch {
		case r == '\u0130':
			out = append(out, 'i', '\u0307')
		case r == '\u03a3' && finalSigma(in, i):
			out = append(out, '\u03c2')
		default:
			out = append(out, unicode.ToLower(r))
		}
	}
	return out
}

// finalSigma reports whether the capital sigma at in[i] is preceded by a
// cased letter and not followed by one, skipping case-ignorable characters
// in both directions.
func finalSigma(in []rune, i int) bool {
	before := false
	for j := i - 1; j >= 0; j-- {
		if caseIgnorable(in[j]) {
			continue
		}
		before = cased(in[j])
		break
	}
	if !before {
		return false
	}
	for j := i + 1; j < len(in); j++ {
		if caseIgnorable(in[j]) {
			continue
		}
		return !cased(in[j])
	}
	return true
}

func cased(r rune) bool {
	return unicode.IsUpper(r) || unicode.IsLower(r) || unicode.IsTitle(r) ||
		unicode.In(r, unicode.Other_Lowercase, unicode.Other_Uppercase)
}

func caseIgnorable(r rune) bool {
	switch r {
	case '\'', '.', ':', '^', '`', '\u00a8', '\u00ad', '\u00af', '\u00b4', '\u00b7', '\u00b8',
		'\u0387', '\u055f', '\u05f4', '\u2018', '\u2019', '\u2024', '\u2027',
		'\ufe13', '\ufe52', '\ufe55', '\uff07', '\uff0e', '\uff1a':
		return true
	}
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk)
}
