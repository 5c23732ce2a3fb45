package pg

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Files pgha owns inside the data directory.
const (
	// ConfFile holds Config.Parameters (all but the protected ones, which go
	// on the command line); postgresql.conf includes it.
	ConfFile = "pgha.conf"
	// RecoveryConfFile holds the standby settings ConfigureStandby writes;
	// ConfFile includes it.
	RecoveryConfFile = "pgha.recovery.conf"
	// HBAFile holds Config.HBA when it is set; hba_file points at it.
	HBAFile = "pgha_hba.conf"

	standbySignal  = "standby.signal"
	recoverySignal = "recovery.signal"
	includeLine    = "include_if_exists = '" + ConfFile + "'"
)

func (i *Instance) dataPath(name string) string { return filepath.Join(i.cfg.DataDir, name) }

// writeConfFiles writes pgha.conf (and pgha_hba.conf when Config.HBA is
// set), makes sure postgresql.conf includes pgha.conf, and creates an empty
// pgha.recovery.conf when there is none.
func (i *Instance) writeConfFiles() error {
	i.mu.Lock()
	params := ResolveParameters(i.params)
	hba := slices.Clone(i.hba)
	i.mu.Unlock()

	var b bytes.Buffer
	b.WriteString("# Written by pgha; rewritten at every start and reload. Do not edit:\n")
	b.WriteString("# set parameters through pgha's Config.Parameters, or in postgresql.conf above the include line.\n")
	for _, k := range slices.Sorted(maps.Keys(params.File)) {
		fmt.Fprintf(&b, "%s = %s\n", k, quoteConf(params.File[k]))
	}
	fmt.Fprintf(&b, "include_if_exists = '%s'\n", RecoveryConfFile)
	fmt.Fprintf(&b, "include_if_exists = '%s'\n", SyncConfFile)
	if err := i.id.writeOwnedFile(i.dataPath(ConfFile), b.Bytes(), 0o600); err != nil {
		return err
	}
	if hba != nil {
		var h bytes.Buffer
		h.WriteString("# Written by pgha from Config.HBA; rewritten at every start and reload.\n")
		for _, l := range hba {
			h.WriteString(l)
			h.WriteByte('\n')
		}
		if err := i.id.writeOwnedFile(i.dataPath(HBAFile), h.Bytes(), 0o600); err != nil {
			return err
		}
	}
	if _, err := os.Stat(i.dataPath(RecoveryConfFile)); errors.Is(err, fs.ErrNotExist) {
		if err := i.writeRecoveryConf(nil); err != nil {
			return err
		}
	}
	return i.ensureInclude()
}

// ensureInclude appends the include line for pgha.conf to postgresql.conf
// unless it is already there. This one line is the only change pgha makes
// to the user's configuration file; it goes last so that pgha's settings
// win over the file's (postgresql.auto.conf, from ALTER SYSTEM, still wins
// over both).
func (i *Instance) ensureInclude() error {
	path := i.dataPath("postgresql.conf")
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) == includeLine {
			return nil
		}
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	b = append(b, "\n# Added by pgha: its settings and the standby configuration. Keep this line last.\n"...)
	b = append(b, includeLine+"\n"...)
	return i.id.writeOwnedFile(path, b, 0o600)
}

// recoverySettings are the standby settings written by ConfigureStandby.
type recoverySettings struct {
	conninfo string
	slot     string
}

// writeRecoveryConf writes pgha.recovery.conf: the standby settings, or
// only a comment when rs is nil.
func (i *Instance) writeRecoveryConf(rs *recoverySettings) error {
	var b bytes.Buffer
	b.WriteString("# Written by pgha (ConfigureStandby / ConfigurePrimary). Do not edit.\n")
	if rs != nil {
		fmt.Fprintf(&b, "primary_conninfo = %s\n", quoteConf(rs.conninfo))
		fmt.Fprintf(&b, "primary_slot_name = %s\n", quoteConf(rs.slot))
		b.WriteString("recovery_target_timeline = 'latest'\n")
		// Blank every recovery target (SPEC 6.3), so a target left in
		// postgresql.conf cannot stop replay early.
		for _, k := range []string{"recovery_target", "recovery_target_lsn", "recovery_target_name", "recovery_target_time", "recovery_target_xid"} {
			fmt.Fprintf(&b, "%s = ''\n", k)
		}
	}
	return i.id.writeOwnedFile(i.dataPath(RecoveryConfFile), b.Bytes(), 0o600)
}

// pgpassKey identifies a pgpass entry.
type pgpassKey struct {
	host string
	port int
	user string
}

// setPgpass records a password for host:port:user and rewrites the pgpass
// file with every recorded entry.
func (i *Instance) setPgpass(host string, port int, cr Credentials) error {
	i.mu.Lock()
	i.pgpass[pgpassKey{host, port, cr.Username}] = cr.Password
	entries := maps.Clone(i.pgpass)
	i.mu.Unlock()
	keys := slices.SortedFunc(maps.Keys(entries), func(a, b pgpassKey) int {
		return strings.Compare(a.host+"\x00"+strconv.Itoa(a.port)+"\x00"+a.user, b.host+"\x00"+strconv.Itoa(b.port)+"\x00"+b.user)
	})
	var b bytes.Buffer
	for _, k := range keys {
		fmt.Fprintf(&b, "%s:%d:*:%s:%s\n", escapePgpass(k.host), k.port, escapePgpass(k.user), escapePgpass(entries[k]))
	}
	if err := os.MkdirAll(filepath.Dir(i.cfg.PgpassFile), 0o755); err != nil {
		return err
	}
	return i.id.writeOwnedFile(i.cfg.PgpassFile, b.Bytes(), 0o600)
}

func escapePgpass(s string) string {
	return strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace(s)
}

// conninfo builds a libpq keyword/value connection string. Keys are emitted
// in the order given; empty values are skipped.
func conninfo(kv ...string) string {
	var parts []string
	for j := 0; j+1 < len(kv); j += 2 {
		if kv[j+1] == "" {
			continue
		}
		parts = append(parts, kv[j]+"="+quoteConninfo(kv[j+1]))
	}
	return strings.Join(parts, " ")
}

func quoteConninfo(v string) string {
	if v != "" && !strings.ContainsAny(v, " '\\\t") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}
