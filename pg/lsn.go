package pg

import (
	"fmt"
	"strconv"
	"strings"
)

// LSN is a write-ahead log position as an absolute byte offset, the number
// pg_wal_lsn_diff(lsn, '0/0') returns and Patroni publishes as xlog_location.
// Differences between two LSNs are byte counts. The zero LSN means "unknown"
// or "none", as 0/0 does in PostgreSQL.
type LSN int64

// String formats the LSN the way PostgreSQL prints pg_lsn values: two
// hexadecimal halves separated by a slash, for example "0/3000148".
func (l LSN) String() string {
	u := uint64(l)
	return fmt.Sprintf("%X/%X", u>>32, uint32(u))
}

// ParseLSN parses PostgreSQL's textual LSN form "X/X" (each half up to 8
// hexadecimal digits, either case). It rejects positions at or above 2^63,
// which PostgreSQL never reaches and which an int64 cannot hold.
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok || hi == "" || lo == "" || len(hi) > 8 || len(lo) > 8 {
		return 0, fmt.Errorf("pg: invalid LSN %q: want two hexadecimal numbers of at most 8 digits separated by '/'", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("pg: invalid LSN %q: %w", s, err)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("pg: invalid LSN %q: %w", s, err)
	}
	if h >= 1<<31 {
		return 0, fmt.Errorf("pg: invalid LSN %q: beyond the int64 range", s)
	}
	return LSN(h<<32 | l), nil
}
