package pg

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Postmaster status words from line 8 of postmaster.pid (PostgreSQL 10+).
const (
	PMStarting = "starting" // still starting up, not accepting connections
	PMStopping = "stopping" // in its shutdown sequence
	PMReady    = "ready"    // accepting connections
	PMStandby  = "standby"  // up in recovery, not accepting connections (hot_standby off)
)

// pidFile is the parsed content of postmaster.pid.
type pidFile struct {
	pid       int    // negative for a single-user backend
	dataDir   string // line 2
	startTime int64  // line 3, unix seconds
	port      int    // line 4
	socketDir string // line 5
	status    string // line 8, trimmed
}

func readPidFile(dataDir string) (pidFile, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return pidFile{}, err
	}
	lines := strings.Split(string(b), "\n")
	var p pidFile
	if len(lines) == 0 {
		return p, errors.New("empty postmaster.pid")
	}
	p.pid, err = strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil {
		return p, errors.New("postmaster.pid: first line is not a pid")
	}
	get := func(n int) string {
		if len(lines) > n {
			return strings.TrimSpace(lines[n])
		}
		return ""
	}
	p.dataDir = get(1)
	p.startTime, _ = strconv.ParseInt(get(2), 10, 64)
	p.port, _ = strconv.Atoi(get(3))
	p.socketDir = get(4)
	p.status = get(7)
	return p, nil
}

// processAlive reports whether pid is a live (not zombie) process that looks
// like a PostgreSQL server. Checking the name guards against a stale
// postmaster.pid whose pid now belongs to an unrelated process.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err == nil {
		// pid (comm) S ...; comm may contain spaces and parentheses.
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
			if st := stat[i+2]; st == 'Z' || st == 'X' {
				return false
			}
		}
	} else if errors.Is(err, os.ErrNotExist) {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	// The postmaster rewrites its title only in children; argv[0] is the
	// program path (postgres, or postmaster for old setups).
	base := filepath.Base(string(argv0))
	if base == "" {
		return true // kernel thread or exiting; be conservative
	}
	return strings.Contains(base, "postgres") || strings.Contains(base, "postmaster")
}

// groupAlive reports whether any process is left in process group pgid.
func groupAlive(pgid int) bool {
	if pgid <= 1 {
		return false
	}
	err := syscall.Kill(-pgid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
