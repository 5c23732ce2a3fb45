package config

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/pgha/pgha/pg"
)

// Check looks at this machine for what the configuration needs, the way
// Patroni's --validate-config does: the PostgreSQL binaries, the data
// directory, the TLS files, the locale initdb will be given, and whether the
// listen addresses can be bound. It returns the problems found (it does not
// repeat the ones in c.Problems).
func (c *Config) Check(ctx context.Context) []Problem {
	var out []Problem
	add := func(sev Severity, key, format string, args ...any) {
		out = append(out, Problem{Severity: sev, Key: key, Msg: fmt.Sprintf(format, args...)})
	}

	bin := c.Postgres.BinDir
	if bin != "" {
		if st, err := os.Stat(filepath.Join(bin, "postgres")); err != nil || st.IsDir() {
			add(Error, "postgresql.bin_dir", "no postgres program in %s", bin)
			bin = ""
		}
	} else {
		b, err := pg.FindBinDir(ctx)
		if err != nil {
			add(Error, "postgresql.bin_dir", "not set, and the PostgreSQL programs were not found: %v", err)
		}
		bin = b
	}
	major := 0
	if bin != "" {
		if v, err := exec.CommandContext(ctx, filepath.Join(bin, "postgres"), "--version").Output(); err == nil {
			major = majorOf(string(v))
		}
	}

	if dd := c.Postgres.DataDir; dd != "" {
		st, err := os.Stat(dd)
		switch {
		case errors.Is(err, os.ErrNotExist):
			// created by initdb or the clone
		case err != nil:
			add(Error, "postgresql.data_dir", "%v", err)
		case !st.IsDir():
			add(Error, "postgresql.data_dir", "%s is not a directory", dd)
		default:
			entries, _ := os.ReadDir(dd)
			if len(entries) > 0 {
				b, err := os.ReadFile(filepath.Join(dd, "PG_VERSION"))
				switch {
				case err != nil:
					add(Error, "postgresql.data_dir", "%s is not empty and has no PG_VERSION: not a PostgreSQL data directory", dd)
				case major != 0 && strings.TrimSpace(string(b)) != strconv.Itoa(major):
					add(Error, "postgresql.data_dir", "%s was created by PostgreSQL %s, the binaries are %d",
						dd, strings.TrimSpace(string(b)), major)
				}
			}
		}
	}
	if pp := c.Postgres.PgPass; pp != "" {
		if _, err := os.Stat(filepath.Dir(pp)); err != nil {
			add(Error, "postgresql.pgpass", "directory %s: %v", filepath.Dir(pp), err)
		}
	}
	if r := c.RestAPI; r.CertFile != "" {
		if r.KeyFilePassword != "" {
			add(Warning, "restapi.keyfile_password", "not implemented yet: use an unencrypted key file")
		} else if _, err := tls.LoadX509KeyPair(r.CertFile, orDefault(r.KeyFile, r.CertFile)); err != nil {
			add(Error, "restapi.certfile", "%v", err)
		}
	}
	for key, f := range map[string]string{"restapi.cafile": c.RestAPI.CAFile, "etcd3.cacert": c.Etcd.CACert, "ctl.cacert": c.Ctl.CACert} {
		if f == "" {
			continue
		}
		if key == "etcd3.cacert" && c.Etcd.Section == "etcd" {
			key = "etcd.cacert"
		}
		b, err := os.ReadFile(f)
		if err != nil {
			add(Error, key, "%v", err)
			continue
		}
		if !x509.NewCertPool().AppendCertsFromPEM(b) {
			add(Error, key, "%s holds no PEM certificate", f)
		}
	}
	if c.Etcd.Cert != "" {
		if _, err := tls.LoadX509KeyPair(c.Etcd.Cert, c.Etcd.Key); err != nil {
			add(Error, c.Etcd.Section+".cert", "%v", err)
		}
	}
	if bin != "" {
		if known, err := KnownParameters(ctx, bin); err == nil {
			params, _ := c.Parameters(c.DynamicConfig())
			names := make([]string, 0, len(params))
			for k := range params {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, k := range names {
				if !strings.Contains(k, ".") && !known[strings.ToLower(k)] {
					add(Warning, "postgresql.parameters."+k, "not a parameter of this PostgreSQL (postgres --describe-config); pgha will remove it, as Patroni does")
				}
			}
		}
	}
	if b := c.Bootstrap; b != nil && b.Initdb.Locale != "" {
		if ok, known := LocaleAvailable(b.Initdb.Locale); known && !ok {
			add(Warning, "bootstrap.initdb", "locale %q is not installed on this machine (locale -a); pgha will bootstrap with %s instead",
				b.Initdb.Locale, FallbackLocale)
		}
	}
	checkBind := func(key, addr string) {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			_ = l.Close()
			return
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			add(Warning, key, "%s is in use now (by this node, if it runs)", addr)
			return
		}
		add(Error, key, "cannot listen on %s: %v", addr, err)
	}
	if c.RestAPI.Listen != "" {
		checkBind("restapi.listen", c.RestAPI.Listen)
	}
	if c.Postgres.Port != 0 {
		for _, h := range strings.Split(c.Postgres.ListenHosts, ",") {
			if h == "*" {
				h = ""
			}
			checkBind("postgresql.listen", net.JoinHostPort(h, strconv.Itoa(c.Postgres.Port)))
		}
	}
	return out
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func majorOf(version string) int {
	f := strings.Fields(version)
	if len(f) == 0 {
		return 0
	}
	v := f[len(f)-1]
	if i := strings.IndexByte(v, '.'); i > 0 {
		v = v[:i]
	}
	n, _ := strconv.Atoi(v)
	return n
}

// FallbackLocale is the locale pgha bootstraps with when the configured one
// is not installed.
const FallbackLocale = "C.UTF-8"

// LocaleAvailable reports whether the locale is installed (per `locale
// -a`); known is false when that cannot be told. C and POSIX are always
// available.
func LocaleAvailable(name string) (ok, known bool) {
	norm := func(s string) string {
		s = strings.ToLower(s)
		s = strings.ReplaceAll(s, "-", "")
		return s
	}
	switch norm(name) {
	case "c", "posix":
		return true, true
	}
	out, err := exec.Command("locale", "-a").Output()
	if err != nil {
		return false, false
	}
	want := norm(name)
	for _, l := range strings.Fields(string(out)) {
		if norm(l) == want {
			return true, true
		}
	}
	return false, true
}

// KnownParameters lists the parameter names this PostgreSQL accepts in its
// configuration files (postgres --describe-config), lowercased. postgres
// allows that option as root too.
func KnownParameters(ctx context.Context, binDir string) (map[string]bool, error) {
	out, err := exec.CommandContext(ctx, filepath.Join(binDir, "postgres"), "--describe-config").Output()
	if err != nil {
		return nil, fmt.Errorf("postgres --describe-config: %w", err)
	}
	known := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, _, _ := strings.Cut(sc.Text(), "\t")
		if name != "" {
			known[strings.ToLower(name)] = true
		}
	}
	if len(known) < 100 {
		return nil, fmt.Errorf("postgres --describe-config listed only %d parameters", len(known))
	}
	return known, sc.Err()
}
