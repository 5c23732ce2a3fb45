package pg

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// BinDirEnv is the environment variable that overrides binary
// auto-detection.
const BinDirEnv = "PGHA_PG_BIN"

// MinVersion is the oldest PostgreSQL major version pgha supports.
const MinVersion = 13

// FindBinDir locates the PostgreSQL programs when Config.BinDir is empty:
// the directory in the PGHA_PG_BIN environment variable (which must then
// hold postgres), else the output of `pg_config --bindir` (pg_config found
// on PATH), else the newest /usr/lib/postgresql/<major>/bin. The directory
// returned contains an executable postgres. Otherwise the error is a
// *[MissingBinaryError] listing every place it looked.
func FindBinDir(ctx context.Context) (string, error) {
	var searched []string
	if d := os.Getenv(BinDirEnv); d != "" {
		if isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
		return "", &MissingBinaryError{Program: "postgres", Searched: []string{BinDirEnv + "=" + d}}
	}
	searched = append(searched, BinDirEnv+" (unset)")
	if pgc, err := exec.LookPath("pg_config"); err == nil {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		out, err := exec.CommandContext(cctx, pgc, "--bindir").Output()
		cancel()
		d := strings.TrimSpace(string(out))
		if err == nil && d != "" && isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
		searched = append(searched, "`"+pgc+" --bindir` ("+d+")")
	} else {
		searched = append(searched, "pg_config on PATH (not found)")
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return versionOfDebianDir(b) - versionOfDebianDir(a) })
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	searched = append(searched, "/usr/lib/postgresql/*/bin")
	return "", &MissingBinaryError{Program: "postgres", Searched: searched}
}

// versionOfDebianDir extracts 15 from /usr/lib/postgresql/15/bin (10 from
// 9.6-style names is not needed: pgha supports 13 and newer).
func versionOfDebianDir(d string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
	return n
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// program returns the path of a PostgreSQL program in the instance's BinDir,
// or a *MissingBinaryError.
func (i *Instance) program(name string) (string, error) {
	p := filepath.Join(i.cfg.BinDir, name)
	if !isExecutable(p) {
		return "", &MissingBinaryError{Program: name, Searched: []string{i.cfg.BinDir}}
	}
	return p, nil
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)(?:\.(\d+))?`)

// parseVersionOutput reads the major version from `postgres --version`.
func parseVersionOutput(out []byte) (int, error) {
	m := versionRE.FindSubmatch(bytes.TrimSpace(out))
	if m == nil {
		return 0, fmt.Errorf("unrecognised version output %q", bytes.TrimSpace(out))
	}
	major, _ := strconv.Atoi(string(m[1]))
	if major < 10 && m[2] != nil { // 9.6 style
		minor, _ := strconv.Atoi(string(m[2]))
		major = major*100 + minor
	}
	return major, nil
}
