package pg

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Parameters is the outcome of [ResolveParameters]: the user's parameters
// split into the protected ones, which pgha passes on the postmaster command
// line (where nothing in a configuration file can override them), and the
// rest, which pgha writes to its own configuration file.
type Parameters struct {
	// Protected holds every protected GUC (SPEC 6.3) with the value pgha will
	// use: the user's value when it is valid, the default otherwise.
	// listen_addresses, port and cluster_name are not in it: they come from
	// Config.ListenAddress, Config.Port and Config.ClusterName.
	Protected map[string]string
	// File holds the other parameters, written to pgha.conf.
	File map[string]string
	// Adjusted lists every user value that was replaced or dropped, and why,
	// sorted by name.
	Adjusted []Adjustment
}

// Adjustment records one parameter the user asked for that pgha did not
// use as given.
type Adjustment struct {
	Name   string // parameter name, lowercased
	Given  string // the user's value
	Used   string // the value used instead; "" when the parameter was dropped
	Reason string // why, for a person to read
}

// String describes the adjustment for a log line.
func (a Adjustment) String() string {
	if a.Used == "" {
		return fmt.Sprintf("%s=%q ignored: %s", a.Name, a.Given, a.Reason)
	}
	return fmt.Sprintf("%s=%q replaced by %q: %s", a.Name, a.Given, a.Used, a.Reason)
}

// protected describes one GUC that Patroni always sets (SPEC 6.3).
type protected struct {
	def   string
	check func(v string) string // "" when valid, else why not
}

func atLeast(min int64) func(string) string {
	return func(v string) string {
		n, err := parseGUCInt(v)
		if err != nil {
			return "not an integer"
		}
		if n < min {
			return fmt.Sprintf("must be at least %d", min)
		}
		return ""
	}
}

func always(why string) func(string) string {
	return func(v string) string {
		if b, ok := parseGUCBool(v); ok && b {
			return ""
		}
		return why
	}
}

// protectedParams are the GUCs Patroni forces, with its defaults and
// validity rules (SPEC 6.3). An invalid value falls back to the default.
var protectedParams = map[string]protected{
	"hot_standby":   {"on", always("always on: a replica must accept read-only queries so pgha can observe it")},
	"wal_log_hints": {"on", always("always on: pg_rewind needs it to rejoin a former primary")},
	"wal_level": {"replica", func(v string) string {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "replica", "hot_standby", "logical":
			return ""
		}
		return "must be replica or logical (hot_standby is an alias of replica)"
	}},
	"max_connections":           {"100", atLeast(25)},
	"max_wal_senders":           {"10", atLeast(3)},
	"wal_keep_size":             {"128MB", walKeepSizeCheck},
	"max_prepared_transactions": {"0", atLeast(0)},
	"max_locks_per_transaction": {"64", atLeast(32)},
	"track_commit_timestamp": {"off", func(v string) string {
		if _, ok := parseGUCBool(v); ok {
			return ""
		}
		return "not a boolean"
	}},
	"max_replication_slots": {"10", atLeast(4)},
	"max_worker_processes":  {"8", atLeast(2)},
}

// managedParams are set by pgha from Config or by ConfigureStandby; a value
// for them in Config.Parameters is ignored.
var managedParams = map[string]string{
	"listen_addresses":         "set from Config.ListenAddress",
	"port":                     "set from Config.Port",
	"cluster_name":             "set from Config.ClusterName",
	"unix_socket_directories":  "set from Config.SocketDir",
	"hba_file":                 "set from Config.HBA",
	"data_directory":           "set from Config.DataDir",
	"config_file":              "pgha uses postgresql.conf in Config.DataDir",
	"primary_conninfo":         "set by ConfigureStandby",
	"primary_slot_name":        "set by ConfigureStandby",
	"recovery_target_timeline": "set by ConfigureStandby (always latest)",
	"standby_mode":             "removed in PostgreSQL 12; pgha writes standby.signal",
	"wal_keep_segments":        "removed in PostgreSQL 13; use wal_keep_size",
}

// ProtectedParameterNames returns the names of the GUCs pgha always sets on
// the postmaster command line, sorted (the SPEC 6.3 list, including the
// ones that come from Config fields).
func ProtectedParameterNames() []string {
	names := slices.Collect(maps.Keys(protectedParams))
	names = append(names, "listen_addresses", "port", "cluster_name")
	slices.Sort(names)
	return names
}

var gucName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$`)

// ResolveParameters applies Patroni's rules to user parameters: protected
// GUCs get their default when absent or invalid (with the reason in
// Adjusted), parameters pgha sets itself are dropped, and everything else is
// passed through for postgresql to judge. Names are matched
// case-insensitively and returned lowercased. It does no I/O.
func ResolveParameters(user map[string]string) Parameters {
	p := Parameters{Protected: map[string]string{}, File: map[string]string{}}
	for name, prot := range protectedParams {
		p.Protected[name] = prot.def
	}
	for _, raw := range slices.Sorted(maps.Keys(user)) {
		v := user[raw]
		name := strings.ToLower(strings.TrimSpace(raw))
		if why, ok := managedParams[name]; ok {
			p.Adjusted = append(p.Adjusted, Adjustment{Name: name, Given: v, Reason: why})
			continue
		}
		if prot, ok := protectedParams[name]; ok {
			if why := prot.check(v); why != "" {
				p.Adjusted = append(p.Adjusted, Adjustment{Name: name, Given: v, Used: prot.def, Reason: why})
				continue
			}
			p.Protected[name] = strings.TrimSpace(v)
			continue
		}
		p.File[name] = v
	}
	slices.SortStableFunc(p.Adjusted, func(a, b Adjustment) int { return strings.Compare(a.Name, b.Name) })
	return p
}

func walKeepSizeCheck(v string) string {
	mb, err := parseGUCSizeMB(v)
	if err != nil {
		return err.Error()
	}
	if mb < 16 {
		return "must be at least 16MB"
	}
	return ""
}

// parseGUCInt parses an integer GUC value as PostgreSQL does: decimal, or
// hexadecimal with 0x, or octal with a leading 0.
func parseGUCInt(v string) (int64, error) {
	s := strings.TrimSpace(v)
	if s == "" {
		return 0, fmt.Errorf("empty")
	}
	neg := strings.HasPrefix(s, "-")
	if neg || strings.HasPrefix(s, "+") {
		s = s[1:]
	}
	base := 10
	switch {
	case strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X"):
		base, s = 16, s[2:]
	case len(s) > 1 && s[0] == '0':
		base, s = 8, s[1:]
	}
	n, err := strconv.ParseInt(s, base, 64)
	if err != nil {
		return 0, err
	}
	if neg {
		n = -n
	}
	return n, nil
}

// parseGUCSizeMB parses a memory-size GUC whose base unit is megabytes
// (wal_keep_size): a number with an optional unit B, kB, MB, GB or TB.
func parseGUCSizeMB(v string) (float64, error) {
	s := strings.TrimSpace(v)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.' || s[i] == '-' || s[i] == '+') {
		i++
	}
	n, err := strconv.ParseFloat(s[:i], 64)
	if err != nil {
		return 0, fmt.Errorf("not a size: want a number with an optional unit (kB, MB, GB, TB)")
	}
	switch strings.TrimSpace(s[i:]) {
	case "":
		return n, nil
	case "B":
		return n / (1 << 20), nil
	case "kB":
		return n / 1024, nil
	case "MB":
		return n, nil
	case "GB":
		return n * 1024, nil
	case "TB":
		return n * 1024 * 1024, nil
	}
	return 0, fmt.Errorf("unknown unit %q: use B, kB, MB, GB or TB", strings.TrimSpace(s[i:]))
}

// parseGUCBool parses a boolean GUC value as PostgreSQL does: on, off, true,
// false, yes, no, 1, 0, or an unambiguous prefix of them.
func parseGUCBool(v string) (value, ok bool) {
	s := strings.ToLower(strings.TrimSpace(v))
	switch s {
	case "1", "on":
		return true, true
	case "0", "of", "off":
		return false, true
	}
	if s == "" {
		return false, false
	}
	for _, w := range []string{"true", "yes"} {
		if strings.HasPrefix(w, s) {
			return true, true
		}
	}
	for _, w := range []string{"false", "no"} {
		if strings.HasPrefix(w, s) {
			return false, true
		}
	}
	return false, false
}

// quoteConf quotes a value for a postgresql.conf line.
func quoteConf(v string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(v, `\`, `\\`), "'", "''") + "'"
}
