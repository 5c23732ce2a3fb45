package pg

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// InitdbOptions are the choices initdb makes once for the life of a
// cluster.
type InitdbOptions struct {
	// Encoding is the server encoding. Default "UTF8".
	Encoding string
	// Locale sets every locale category. Default "C" (always available,
	// fastest sorting; choose for example "en_US.UTF-8" for natural order).
	Locale string
	// DataChecksums turns on data page checksums (initdb -k). pg_rewind
	// works either with them or with wal_log_hints, which pgha always
	// turns on.
	DataChecksums bool
	// AuthLocal and AuthHost are the methods initdb writes into the data
	// directory's pg_hba.conf (used only while Config.HBA is nil). Default
	// "scram-sha-256" when Config.Superuser has a password, else "trust".
	AuthLocal, AuthHost string
	// NoSync skips initdb's final fsync: faster, but the cluster may be
	// damaged by an OS crash right after. For tests.
	NoSync bool
	// Args are extra initdb arguments, passed last.
	Args []string
}

// Initdb creates a new cluster in Config.DataDir, which must be missing or
// empty (else ErrDataDirNotEmpty), as the OS user, with the superuser from
// Config.Superuser (its password passed through a temporary file, never on
// the command line). Then it writes pgha's configuration files. It does not
// start the server; after Start, EnsureRoles creates the other roles.
func (i *Instance) Initdb(ctx context.Context, opts InitdbOptions) error {
	const op = "initdb"
	release, err := i.begin(ctx, op)
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := withTimeout(ctx, i.cfg.Timeout)
	defer cancel()
	if err := i.prepareEmptyDataDir(op); err != nil {
		return err
	}
	if opts.Encoding == "" {
		opts.Encoding = "UTF8"
	}
	if opts.Locale == "" {
		opts.Locale = "C"
	}
	def := "trust"
	if i.cfg.Superuser.Password != "" {
		def = "scram-sha-256"
	}
	if opts.AuthLocal == "" {
		opts.AuthLocal = def
	}
	if opts.AuthHost == "" {
		opts.AuthHost = def
	}
	args := []string{"-D", i.cfg.DataDir, "-U", i.cfg.Superuser.Username, "-E", opts.Encoding, "--locale=" + opts.Locale,
		"--auth-local=" + opts.AuthLocal, "--auth-host=" + opts.AuthHost}
	if i.version >= 13 {
		args = append(args, "--no-instructions")
	}
	if opts.DataChecksums {
		args = append(args, "--data-checksums")
	}
	if opts.NoSync {
		args = append(args, "--no-sync")
	}
	if i.cfg.Superuser.Password != "" {
		pw := filepath.Join(i.cfg.SocketDir, "pgha-initdb-pw."+strconv.Itoa(i.cfg.Port))
		if err := i.id.writeOwnedFile(pw, []byte(i.cfg.Superuser.Password+"\n"), 0o600); err != nil {
			return &DirError{Op: op, Path: pw, Cause: ErrPermission, Problem: err.Error()}
		}
		defer os.Remove(pw)
		args = append(args, "--pwfile="+pw)
	}
	args = append(args, opts.Args...)
	i.log.Info("running initdb", "data_dir", i.cfg.DataDir, "checksums", opts.DataChecksums)
	if _, err := i.run(ctx, command{op: op, name: "initdb", args: args}); err != nil {
		return err
	}
	if err := i.writeConfFiles(); err != nil {
		return &DirError{Op: op, Path: i.cfg.DataDir, Cause: ErrPermission, Problem: "writing pgha's configuration files: " + err.Error()}
	}
	return nil
}

// prepareEmptyDataDir checks that nothing runs and that the data directory
// is missing or empty, then creates it owned by the OS user, mode 0700,
// and the socket directory.
func (i *Instance) prepareEmptyDataDir(op string) error {
	if p := i.current(); p != nil {
		return fmt.Errorf("pg: %s: %w (pid %d)", op, ErrAlreadyRunning, p.pid)
	}
	dir := i.cfg.DataDir
	entries, err := os.ReadDir(dir)
	switch {
	case err == nil && len(entries) > 0:
		what := fmt.Sprintf("has %d entries", len(entries))
		if i.Initialized() {
			what = "already holds a cluster (PG_VERSION exists)"
		}
		return &DirError{Op: op, Path: dir, Cause: ErrDataDirNotEmpty, Problem: what + "; remove it or move it aside first"}
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return &DirError{Op: op, Path: dir, Cause: ErrPermission, Problem: err.Error()}
	}
	if err := i.id.checkReachable(op, dir); err != nil {
		return err
	}
	if err := i.prepareRuntime(op); err != nil {
		return err
	}
	if _, err := i.id.ensureOwnedDir(dir, 0o700); err != nil {
		return &DirError{Op: op, Path: dir, Cause: ErrPermission, Problem: "creating the data directory: " + err.Error()}
	}
	// An existing empty directory may belong to someone else.
	if err := os.Chmod(dir, 0o700); err != nil {
		return &DirError{Op: op, Path: dir, Cause: ErrPermission, Problem: err.Error()}
	}
	if err := i.id.chown(dir); err != nil {
		return &DirError{Op: op, Path: dir, Cause: ErrPermission, Problem: err.Error()}
	}
	return nil
}

// CloneProgress is one progress report of a clone, from pg_basebackup
// --progress (which reports at most once a second, and once at the end).
type CloneProgress struct {
	DoneBytes  int64 // copied so far
	TotalBytes int64 // pg_basebackup's estimate of the total; it can grow
	Percent    int   // DoneBytes/TotalBytes, capped at 100
	// Tablespaces and TotalTablespaces count finished and all tablespaces.
	Tablespaces, TotalTablespaces int
}

var progressRE = regexp.MustCompile(`(\d+)/(\d+) kB \((\d+)%\), (\d+)/(\d+) tablespace`)

// parseProgress reads one pg_basebackup --progress line.
func parseProgress(line string) (CloneProgress, bool) {
	m := progressRE.FindStringSubmatch(line)
	if m == nil {
		return CloneProgress{}, false
	}
	n := func(s string) int64 { v, _ := strconv.ParseInt(s, 10, 64); return v }
	return CloneProgress{
		DoneBytes: n(m[1]) * 1024, TotalBytes: n(m[2]) * 1024, Percent: int(n(m[3])),
		Tablespaces: int(n(m[4])), TotalTablespaces: int(n(m[5])),
	}, true
}

// Clone creates the data directory as a copy of the running server up with
// pg_basebackup (-X stream, fast checkpoint), as the replication role, and
// leaves it configured as a standby of up (see ConfigureStandby), not
// started. The data directory must be missing or empty; if the copy fails,
// what was copied is removed. progress, if not nil, is called (from another
// goroutine, one call at a time) with every progress line. Clone is bounded
// by Config.TransferTimeout and ctx.
func (i *Instance) Clone(ctx context.Context, up Upstream, progress func(CloneProgress)) error {
	const op = "clone"
	release, err := i.begin(ctx, op)
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := withTimeout(ctx, i.cfg.TransferTimeout)
	defer cancel()
	up = up.withDefaults()
	if err := up.check(op); err != nil {
		return err
	}
	if err := i.prepareEmptyDataDir(op); err != nil {
		return err
	}
	if err := i.setPgpass(up.Host, up.Port, i.cfg.Replication); err != nil {
		return &DirError{Op: op, Path: i.cfg.PgpassFile, Cause: ErrPermission, Problem: err.Error()}
	}
	args := []string{
		"-D", i.cfg.DataDir,
		"-d", conninfo("host", up.Host, "port", strconv.Itoa(up.Port), "user", i.cfg.Replication.Username,
			"passfile", i.cfg.PgpassFile, "application_name", i.cfg.Name, "sslmode", up.SSLMode),
		"-X", "stream", "-c", "fast", "-w", "--progress",
	}
	onLine := func(l string) {
		if p, ok := parseProgress(l); ok && progress != nil {
			if p.Percent > 100 {
				p.Percent = 100
			}
			progress(p)
		}
	}
	i.log.Info("cloning", "upstream", fmt.Sprintf("%s:%d", up.Host, up.Port))
	_, err = i.run(ctx, command{op: op, name: "pg_basebackup", args: args, env: []string{"LC_ALL=C", "LANG=C"}, onLine: onLine})
	if err != nil {
		i.emptyDataDir()
		var ce *CommandError
		if errors.As(err, &ce) && ce.Detail == "" {
			ce.Detail = detailLine(ce.Stderr)
		}
		return err
	}
	if err := os.Chmod(i.cfg.DataDir, 0o700); err != nil {
		return &DirError{Op: op, Path: i.cfg.DataDir, Cause: ErrPermission, Problem: err.Error()}
	}
	// The copy carries the upstream's pgha files; write this member's.
	if err := i.writeConfFiles(); err != nil {
		return &DirError{Op: op, Path: i.cfg.DataDir, Cause: ErrPermission, Problem: err.Error()}
	}
	return i.configureStandby(op, up)
}

// emptyDataDir removes everything inside the data directory (after a
// failed clone into a directory that was empty).
func (i *Instance) emptyDataDir() {
	entries, _ := os.ReadDir(i.cfg.DataDir)
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(i.cfg.DataDir, e.Name()))
	}
}

// detailLine picks the most telling line of a program's output: the last
// one that says "error" or "FATAL", else the last one.
func detailLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for j := len(lines) - 1; j >= 0; j-- {
		l := strings.TrimSpace(lines[j])
		if strings.Contains(l, "error:") || strings.Contains(l, "FATAL") {
			return l
		}
	}
	return ""
}
