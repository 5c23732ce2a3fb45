package routing

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// LSN is a PostgreSQL WAL position in bytes (pg_lsn). It prints in the
// familiar X/X form.
//
// A Write returns the LSN of its commit as a read-your-writes token: pass it
// as ReadOptions.After and the read goes to a node that has replayed it.
// LSN implements encoding.TextMarshaler, so a token can travel in a cookie
// or a header between requests.
type LSN uint64

// LSNUnknown is a token no replica is known to have reached: Write returns
// it when the commit succeeded but its position could not be read, and a
// read given it goes straight to the primary.
const LSNUnknown LSN = math.MaxUint64

// String returns the X/X form ("16/B374D848"); LSNUnknown prints as
// "unknown".
func (l LSN) String() string {
	if l == LSNUnknown {
		return "unknown"
	}
	return fmt.Sprintf("%X/%X", uint64(l)>>32, uint32(l))
}

// MarshalText implements encoding.TextMarshaler.
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *LSN) UnmarshalText(b []byte) error {
	v, err := ParseLSN(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// ParseLSN parses the X/X form (and "unknown", and "" as 0).
func ParseLSN(s string) (LSN, error) {
	switch s {
	case "":
		return 0, nil
	case "unknown":
		return LSNUnknown, nil
	}
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("routing: invalid LSN %q", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("routing: invalid LSN %q", s)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("routing: invalid LSN %q", s)
	}
	return LSN(h<<32 | l), nil
}
