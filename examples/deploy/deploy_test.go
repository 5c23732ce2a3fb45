package deploy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/pgha/pgha/examples/deploy"
	"github.com/pgha/pgha/internal/cluster"
	"github.com/pgha/pgha/internal/freeport"
	"github.com/pgha/pgha/internal/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := fs.ReadFile(deploy.Files, name)
	require.NoError(t, err)
	return b
}

// prometheusOwn are series Prometheus makes itself, not read from /metrics.
var prometheusOwn = map[string]bool{"up": true}

// TestDashboardAndAlertsUseExportedMetrics scrapes /metrics of a real pgha
// node and checks that every metric the Grafana dashboard and the alerting
// rules read is one it exports.
func TestDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	// The dashboard is a valid Grafana model first.
	dash := read(t, "grafana/pgha-dashboard.json")
	var dashModel struct {
		UID, Title    string
		SchemaVersion int `json:"schemaVersion"`
		Panels        []struct {
			ID         int            `json:"id"`
			Type       string         `json:"type"`
			Title      string         `json:"title"`
			GridPos    map[string]int `json:"gridPos"`
			Datasource map[string]any `json:"datasource"`
			Targets    []any          `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(dash, &dashModel))
	require.NotEmpty(t, dashModel.UID)
	require.NotEmpty(t, dashModel.Title)
	require.GreaterOrEqual(t, dashModel.SchemaVersion, 36)
	ids := map[int]bool{}
	for _, p := range dashModel.Panels {
		require.False(t, ids[p.ID], "panel id %d used twice", p.ID)
		ids[p.ID] = true
		require.NotEmpty(t, p.Title)
		require.Contains(t, p.GridPos, "w", "panel %q has no gridPos", p.Title)
		if p.Type != "row" {
			require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
			require.NotNil(t, p.Datasource, "panel %q has no datasource", p.Title)
		}
	}

	used := map[string][]string{} // metric -> where
	queries, err := deploy.DashboardQueries(dash)
	require.NoError(t, err)
	require.NotEmpty(t, queries)
	for _, q := range queries {
		names, err := deploy.MetricNames(q)
		require.NoError(t, err)
		require.NotEmpty(t, names, "dashboard query %q reads no metric", q)
		for _, n := range names {
			used[n] = append(used[n], "dashboard")
		}
	}
	alerts, err := deploy.AlertQueries(read(t, "prometheus/pgha-alerts.yml"))
	require.NoError(t, err)
	require.NotEmpty(t, alerts)
	for name, q := range alerts {
		names, err := deploy.MetricNames(q)
		require.NoError(t, err)
		require.NotEmpty(t, names, "alert %s reads no metric", name)
		for _, n := range names {
			used[n] = append(used[n], "alert "+name)
		}
	}
	// What the dashboard must show (issue 9): leader, lag, timeline, failovers, fence events.
	for _, m := range []string{"patroni_primary", "pgha_replication_standby_replay_lag_bytes", "patroni_postgres_timeline",
		"pgha_fence_events_total"} {
		require.Contains(t, used, m)
	}

	// Real nodes: a two-member cluster (so that the leader reports its
	// standby's lag), the leader's and the replica's /metrics in the text
	// format, read until every used metric appears (the leader measures
	// its standby once it streams) or the time runs out.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := cluster.NewForTest(ctx, t, cluster.Options{Nodes: 2})
	_, err = c.WaitStable(ctx)
	require.NoError(t, err)
	scrape := func(n *cluster.Node) (map[string]bool, error) {
		resp, err := http.Get(strings.TrimSuffix(n.APIURL(), "/patroni") + "/metrics")
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(resp.Body)
		if err != nil {
			return nil, err
		}
		out := map[string]bool{}
		for name, f := range families {
			if len(f.GetMetric()) > 0 {
				out[name] = true
			}
		}
		return out, nil
	}
	exported := map[string]bool{}
	missingNow := func() []string {
		var missing []string
		for name, where := range used {
			if !prometheusOwn[name] && !exported[name] {
				w := slices.Compact(slices.Sorted(slices.Values(where)))
				missing = append(missing, fmt.Sprintf("%s (used by %s)", name, strings.Join(w, ", ")))
			}
		}
		sort.Strings(missing)
		return missing
	}
	sctx, scancel := context.WithTimeout(ctx, time.Minute)
	defer scancel()
	_ = cluster.Eventually(sctx, func(context.Context) error {
		for _, n := range c.Nodes() {
			got, err := scrape(n)
			if err != nil {
				return err
			}
			for name := range got {
				exported[name] = true
			}
		}
		if m := missingNow(); len(m) > 0 {
			return fmt.Errorf("missing %v", m)
		}
		return nil
	})
	require.True(t, exported["patroni_primary"])
	require.Empty(t, missingNow(), "metrics the dashboard or the alerts use that /metrics does not export")
	var names []string
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	t.Logf("%d metrics used, all exported: %s", len(names), strings.Join(names, " "))
}

// nodeConfig is what the consistency checks read from a node's file.
type nodeConfig struct {
	Scope   string `yaml:"scope"`
	Name    string `yaml:"name"`
	RestAPI struct {
		Listen  string `yaml:"listen"`
		Connect string `yaml:"connect_address"`
	} `yaml:"restapi"`
	Etcd3 struct {
		Hosts string `yaml:"hosts"`
	} `yaml:"etcd3"`
	Postgresql struct {
		Listen     string            `yaml:"listen"`
		Connect    string            `yaml:"connect_address"`
		DataDir    string            `yaml:"data_dir"`
		Pgpass     string            `yaml:"pgpass"`
		Parameters map[string]string `yaml:"parameters"`
	} `yaml:"postgresql"`
}

var nodeIPs = map[string]string{"node1": "192.168.1.10", "node2": "192.168.1.11", "node3": "192.168.1.12"}

// TestKitIsConsistent checks that the files agree with each other: the
// three configurations differ only in name and addresses, HAProxy checks
// each node's REST port and routes to its Postgres, Prometheus scrapes the
// REST ports, the etcd units and the configurations name the same etcd
// members, and the pgha unit lets pgha write where the configurations say.
func TestKitIsConsistent(t *testing.T) {
	var base string
	var etcdHosts string
	for _, name := range []string{"node1", "node2", "node3"} {
		raw := read(t, "config/"+name+".yml")
		var cfg nodeConfig
		require.NoError(t, yaml.Unmarshal(raw, &cfg))
		ip := nodeIPs[name]
		require.Equal(t, name, cfg.Name)
		require.Equal(t, ip+":8008", cfg.RestAPI.Connect)
		require.Equal(t, ip+":5432", cfg.Postgresql.Connect)
		// Everything else is the same on every node (the etcd hosts too).
		var lines []string
		for _, line := range strings.Split(string(raw), "\n") {
			if !strings.Contains(line, "hosts:") {
				line = strings.ReplaceAll(strings.ReplaceAll(line, name, "NODE"), ip, "IP")
			}
			lines = append(lines, line)
		}
		norm := strings.Join(lines, "\n")
		if base == "" {
			base = norm
		} else {
			require.Equal(t, base, norm, "%s differs from node1 in more than its name and addresses", name)
		}
		etcdHosts = cfg.Etcd3.Hosts

		// The unit's writable paths cover the data directory and pgpass; its
		// runtime directory is the socket directory.
		unit := string(read(t, "systemd/pgha.service"))
		rw := regexp.MustCompile(`(?m)^ReadWritePaths=(.*)$`).FindStringSubmatch(unit)
		require.NotNil(t, rw, "pgha.service has no ReadWritePaths")
		for _, p := range []string{cfg.Postgresql.DataDir, cfg.Postgresql.Pgpass} {
			covered := false
			for _, w := range strings.Fields(rw[1]) {
				if strings.HasPrefix(p, strings.TrimSuffix(w, "/")+"/") {
					covered = true
				}
			}
			require.True(t, covered, "pgha.service cannot write %s (ReadWritePaths=%s)", p, rw[1])
		}
		rd := regexp.MustCompile(`(?m)^RuntimeDirectory=(.*)$`).FindStringSubmatch(unit)
		require.NotNil(t, rd)
		require.Equal(t, "/run/"+rd[1], cfg.Postgresql.Parameters["unix_socket_directories"])
		require.Contains(t, unit, "ExecStart=/usr/local/bin/pgha run /etc/pgha/pgha.yml\n")
	}

	// HAProxy: every server line of the node routes to its Postgres and checks its REST port.
	hp := string(read(t, "haproxy/haproxy.cfg"))
	servers := regexp.MustCompile(`(?m)^\s*server (\S+) (\S+) check port (\d+)`).FindAllStringSubmatch(hp, -1)
	require.Len(t, servers, 9, "three listen sections of three servers")
	for _, s := range servers {
		require.Equal(t, nodeIPs[s[1]]+":5432", s[2], "haproxy server %s", s[1])
		require.Equal(t, "8008", s[3])
	}
	for _, check := range []string{"option httpchk GET /primary", "option httpchk GET /replica"} {
		require.Contains(t, hp, check)
	}

	// Prometheus scrapes every REST port.
	var prom struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	require.NoError(t, yaml.Unmarshal(read(t, "prometheus/prometheus.yml"), &prom))
	var targets []string
	for _, sc := range prom.ScrapeConfigs {
		if sc.JobName == "pgha" {
			require.Equal(t, "/metrics", sc.MetricsPath)
			for _, s := range sc.StaticConfigs {
				targets = append(targets, s.Targets...)
			}
		}
	}
	require.ElementsMatch(t, []string{"192.168.1.10:8008", "192.168.1.11:8008", "192.168.1.12:8008"}, targets)

	// etcd: the unit's cluster members, at their client port, are the
	// configurations' etcd hosts.
	unit := string(read(t, "systemd/etcd.service"))
	m := regexp.MustCompile(`(?m)^\s+--initial-cluster (\S+)`).FindStringSubmatch(unit)
	require.NotNil(t, m)
	var clients []string
	for _, member := range strings.Split(m[1], ",") {
		_, peer, ok := strings.Cut(member, "=")
		require.True(t, ok)
		clients = append(clients, strings.TrimSuffix(strings.TrimPrefix(peer, "http://"), ":2380")+":2379")
	}
	require.Equal(t, strings.Join(clients, ","), etcdHosts)
	require.Contains(t, unit, "ReadWritePaths=/var/lib/etcd\n")
	require.Contains(t, unit, "--data-dir /var/lib/etcd ")

	// Hardening options both units carry.
	for _, name := range []string{"systemd/etcd.service", "systemd/pgha.service"} {
		u := string(read(t, name))
		for _, opt := range []string{"NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
			"ProtectKernelTunables=yes", "ProtectControlGroups=yes", "RestrictSUIDSGID=yes", "CapabilityBoundingSet=\n"} {
			require.Contains(t, u, opt, "%s lacks %s", name, strings.TrimSpace(opt))
		}
	}
}

// TestSystemdUnitsVerify runs systemd-analyze verify on the units (with
// the programs they start replaced by /bin/true): it reports unknown or
// misspelt options.
func TestSystemdUnitsVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	dir := t.TempDir()
	var paths []string
	for _, name := range []string{"etcd.service", "pgha.service"} {
		u := string(read(t, "systemd/"+name))
		u = strings.NewReplacer("/usr/local/bin/etcd ", "/bin/true ", "/usr/local/bin/pgha ", "/bin/true ").Replace(u)
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(u), 0o644))
		paths = append(paths, p)
	}
	out, err := exec.Command(sa, append([]string{"verify"}, paths...)...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	var problems []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if line := sc.Text(); strings.Contains(line, dir) {
			problems = append(problems, line)
		}
	}
	require.Empty(t, problems, "systemd-analyze verify:\n%s", out)
}

// TestHAProxyConfigValid runs haproxy -c on the configuration.
func TestHAProxyConfigValid(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/haproxy"); serr == nil {
			bin = "/usr/sbin/haproxy"
		} else if os.Getenv("CI") != "" {
			t.Fatalf("haproxy is required in CI (.ci/run installs it)")
		} else {
			t.Skip("haproxy not installed")
		}
	}
	p := filepath.Join(t.TempDir(), "haproxy.cfg")
	require.NoError(t, os.WriteFile(p, read(t, "haproxy/haproxy.cfg"), 0o644))
	out, err := exec.Command(bin, "-c", "-f", p).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.NotContains(t, string(out), "WARNING", "%s", out)
}

// TestConfigsValidate runs `pgha --validate-config` on each node's file,
// with its addresses moved to loopback and free ports, its paths to a
// temporary directory, and the passwords from pgha.env in the environment,
// as systemd would pass them.
func TestConfigsValidate(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the pgha binary; skipped under -short")
	}
	pgBin := pgtest.BinDir(t)
	dir := t.TempDir()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	pgha := filepath.Join(dir, "pgha")
	out, err := exec.Command(goBin, "build", "-o", pgha, "../pgha").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	env := os.Environ()
	for _, line := range strings.Split(string(read(t, "config/pgha.env")), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			require.Contains(t, line, "=")
			env = append(env, line)
		}
	}
	for _, name := range []string{"node1", "node2", "node3"} {
		yml := string(read(t, "config/"+name+".yml"))
		api, pgPort := freeport.MustGet(t), freeport.MustGet(t)
		ip := nodeIPs[name]
		yml = strings.NewReplacer(
			ip+":8008", fmt.Sprintf("127.0.0.1:%d", api),
			ip+",127.0.0.1:5432", fmt.Sprintf("127.0.0.1:%d", pgPort),
			ip+":5432", fmt.Sprintf("127.0.0.1:%d", pgPort),
			"/var/lib/postgresql/15/", dir+"/"+name+"-",
			"/usr/lib/postgresql/15/bin", pgBin,
			"/run/postgresql", dir,
		).Replace(yml)
		require.NotContains(t, yml, ip+":8008", "the REST address of %s was not moved", name)
		require.NotContains(t, yml, ip+":5432", "the Postgres address of %s was not moved", name)
		p := filepath.Join(dir, name+".yml")
		require.NoError(t, os.WriteFile(p, []byte(yml), 0o600))
		cmd := exec.Command(pgha, "--validate-config", p)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		t.Logf("pgha --validate-config %s:\n%s", name, out)
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), ": valid (")
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if strings.HasPrefix(line, "warning:") {
				// The only warning a sample file may carry: a setting whose
				// feature another issue is implementing.
				require.Contains(t, line, "use_slots", "unexpected warning for %s", name)
			}
		}
	}
}
