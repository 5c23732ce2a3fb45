package pg

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// identity is the OS account PostgreSQL programs run as.
type identity struct {
	name   string
	uid    uint32
	gid    uint32
	groups []uint32
	home   string
	// switchTo is set when this process runs as root and must switch to the
	// account for every program it starts.
	switchTo bool
}

func currentUserName() string {
	u, err := user.Current()
	if err != nil {
		return ""
	}
	return u.Username
}

// lookupIdentity resolves the account programs run as: cfg.OSUser (default
// "postgres") when running as root, else the current user.
func lookupIdentity(osUser string) (identity, error) {
	if os.Geteuid() != 0 {
		id := identity{uid: uint32(os.Geteuid()), gid: uint32(os.Getegid())}
		if u, err := user.Current(); err == nil {
			id.name, id.home = u.Username, u.HomeDir
		}
		gs, _ := os.Getgroups()
		for _, g := range gs {
			id.groups = append(id.groups, uint32(g))
		}
		return id, nil
	}
	if osUser == "" {
		osUser = DefaultOSUser
	}
	u, err := user.Lookup(osUser)
	if err != nil {
		return identity{}, &ConfigError{Field: "OSUser", Problem: fmt.Sprintf(
			"this process runs as root, so PostgreSQL programs must run as an unprivileged account, but %q does not exist: %v (create it, e.g. `useradd --system postgres`, or set OSUser)", osUser, err)}
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return identity{}, &ConfigError{Field: "OSUser", Problem: fmt.Sprintf("account %q has a non-numeric uid or gid", osUser)}
	}
	if uid == 0 {
		return identity{}, &ConfigError{Field: "OSUser", Problem: fmt.Sprintf("account %q has uid 0; postgres refuses to run as root", osUser)}
	}
	id := identity{name: u.Username, uid: uint32(uid), gid: uint32(gid), home: u.HomeDir, switchTo: true}
	if gids, err := u.GroupIds(); err == nil {
		for _, g := range gids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				id.groups = append(id.groups, uint32(n))
			}
		}
	}
	if !slices.Contains(id.groups, id.gid) {
		id.groups = append(id.groups, id.gid)
	}
	return id, nil
}

func (id identity) String() string {
	if id.name != "" {
		return fmt.Sprintf("%s (uid %d)", id.name, id.uid)
	}
	return fmt.Sprintf("uid %d", id.uid)
}

// sysProcAttr returns the attributes for a child process: its own process
// group (so a terminal's Ctrl-C does not reach postgres and the whole group
// can be found again after a crash) and, when running as root, the OS user's
// credentials.
func (id identity) sysProcAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	if id.switchTo {
		a.Credential = &syscall.Credential{Uid: id.uid, Gid: id.gid, Groups: id.groups}
	}
	return a
}

// chown gives path to the OS user when running as root; otherwise the files
// are already the current user's.
func (id identity) chown(path string) error {
	if !id.switchTo {
		return nil
	}
	return os.Lchown(path, int(id.uid), int(id.gid))
}

// canSearch reports whether the OS user may traverse (x) the directory with
// the given stat.
func (id identity) can(st *syscall.Stat_t, mode fs.FileMode, bit uint32) bool {
	perm := uint32(mode.Perm())
	switch {
	case st.Uid == id.uid:
		return perm&(bit<<6) != 0
	case slices.Contains(id.groups, st.Gid) || st.Gid == id.gid:
		return perm&(bit<<3) != 0
	default:
		return perm&bit != 0
	}
}

// checkReachable verifies that the OS user can traverse every existing
// ancestor of path, which postgres needs to reach its data directory, socket
// directory and log file. Missing ancestors are skipped (pgha creates them
// with mode 0755).
func (id identity) checkReachable(op, path string) error {
	if id.uid == 0 {
		return nil
	}
	dir := filepath.Dir(filepath.Clean(path))
	var chain []string
	for {
		chain = append(chain, dir)
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	slices.Reverse(chain)
	for _, d := range chain {
		fi, err := os.Stat(d)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return &DirError{Op: op, Path: d, Problem: err.Error(), Cause: ErrPermission}
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if !id.can(st, fi.Mode(), 1) {
			return &DirError{Op: op, Path: d, Cause: ErrPermission, Problem: fmt.Sprintf(
				"the OS user %s cannot traverse this directory (mode %04o, owner uid %d) on the way to %s; "+
					"allow it (for example chmod o+x or chown) or put the path elsewhere",
				id, fi.Mode().Perm(), st.Uid, path)}
		}
	}
	return nil
}

// checkWritable verifies that the OS user can create files in dir.
func (id identity) checkWritable(op, dir string) error {
	if id.uid == 0 {
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return &DirError{Op: op, Path: dir, Problem: err.Error(), Cause: ErrPermission}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && !(id.can(st, fi.Mode(), 2) && id.can(st, fi.Mode(), 1)) {
		return &DirError{Op: op, Path: dir, Cause: ErrPermission, Problem: fmt.Sprintf(
			"the OS user %s cannot create files here (mode %04o, owner uid %d)", id, fi.Mode().Perm(), st.Uid)}
	}
	return nil
}

// ensureOwnedDir creates dir (and missing parents with mode 0755) if needed.
// A directory it creates is owned by the OS user with the given mode. An
// existing directory is left alone if created is false in the result; the
// caller decides whether its ownership matters.
func (id identity) ensureOwnedDir(dir string, mode fs.FileMode) (created bool, err error) {
	if _, err := os.Stat(dir); err == nil {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return false, err
	}
	if err := os.Mkdir(dir, mode); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, err
	}
	if err := os.Chmod(dir, mode); err != nil { // umask
		return true, err
	}
	return true, id.chown(dir)
}

// ownedBy reports the owner uid of path.
func ownerOf(path string) (uint32, fs.FileMode, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fi.Mode(), fmt.Errorf("no ownership information for %s", path)
	}
	return st.Uid, fi.Mode(), nil
}

// writeOwnedFile writes data to path atomically (temporary file + rename)
// with the given mode, owned by the OS user.
func (id identity) writeOwnedFile(path string, data []byte, mode fs.FileMode) error {
	tmp := path + ".pgha-tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		_ = os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := id.chown(tmp); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// childEnv is the environment for PostgreSQL programs: this process's
// environment without libpq and PGDATA variables (which would silently
// change what the programs connect to), with HOME/USER/LOGNAME of the OS
// user, plus extra.
func (id identity) childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") {
			continue
		}
		if id.switchTo && (k == "HOME" || k == "USER" || k == "LOGNAME") {
			continue
		}
		env = append(env, kv)
	}
	if id.switchTo {
		if id.home != "" {
			env = append(env, "HOME="+id.home)
		}
		env = append(env, "USER="+id.name, "LOGNAME="+id.name)
	}
	return append(env, extra...)
}
