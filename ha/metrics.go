package ha

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricDef is one of Patroni's /metrics gauges or counters (SPEC.md 4.8).
type metricDef struct {
	name, help string
	counter    bool
	value      func(s *Status) float64
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// memberStates are the member state names in the order of their metric
// index (SPEC.md 1.3).
var memberStates = []string{"initializing new cluster", "initdb failed", "running custom bootstrap script",
	"custom bootstrap failed", "creating replica", "running", "starting", "starting after custom bootstrap",
	"start failed", "restarting", "restart failed", "stopping", "stopped", "stop failed", "crashed"}

func stateIndex(state string) float64 {
	for i, s := range memberStates {
		if s == state {
			return float64(i)
		}
	}
	return -1
}

var metricDefs = []metricDef{
	{"patroni_version", "Patroni semver without periods.", false, func(*Status) float64 { return versionNumber(Version) }},
	{"patroni_postgres_running", "Value is 1 if Postgres is running, 0 otherwise.", false, func(s *Status) float64 { return b2f(s.State == "running") }},
	{"patroni_postmaster_start_time", "Epoch seconds since Postgres started.", false, func(s *Status) float64 {
		if s.PostmasterStartTime.IsZero() {
			return 0
		}
		return float64(s.PostmasterStartTime.UnixNano()) / 1e9
	}},
	{"patroni_master", "Value is 1 if this node is the leader, 0 otherwise.", false, func(s *Status) float64 { return b2f(s.IsLeader && !s.InRecovery) }},
	{"patroni_primary", "Value is 1 if this node is the leader, 0 otherwise.", false, func(s *Status) float64 { return b2f(s.IsLeader && !s.InRecovery) }},
	{"patroni_xlog_location", "Current location of the Postgres transaction log, 0 if this node is not the leader.", true, func(s *Status) float64 { return float64(s.XLogLocation) }},
	{"patroni_standby_leader", "Value is 1 if this node is the standby_leader, 0 otherwise.", false, func(*Status) float64 { return 0 }},
	{"patroni_replica", "Value is 1 if this node is a replica, 0 otherwise.", false, func(s *Status) float64 { return b2f(s.State == "running" && s.InRecovery) }},
	{"patroni_sync_standby", "Value is 1 if this node is a sync standby replica, 0 otherwise.", false, func(s *Status) float64 { return b2f(s.SyncStandby && s.InRecovery) }},
	{"patroni_quorum_standby", "Value is 1 if this node is a quorum standby replica, 0 otherwise.", false, func(*Status) float64 { return 0 }},
	{"patroni_xlog_received_location", "Current location of the received Postgres transaction log, 0 if this node is not a replica.", true, func(s *Status) float64 { return float64(s.ReceivedLocation) }},
	{"patroni_xlog_replayed_location", "Current location of the replayed Postgres transaction log, 0 if this node is not a replica.", true, func(s *Status) float64 { return float64(s.ReplayedLocation) }},
	{"patroni_xlog_replayed_timestamp", "Current timestamp of the replayed Postgres transaction log, 0 if null.", false, func(s *Status) float64 {
		if s.ReplayedTimestamp == nil || !s.InRecovery {
			return 0
		}
		return float64(s.ReplayedTimestamp.UnixNano()) / 1e9
	}},
	{"patroni_xlog_paused", "Value is 1 if the Postgres xlog is paused, 0 otherwise.", false, func(s *Status) float64 { return b2f(s.InRecovery && s.ReplayPaused) }},
	{"patroni_postgres_streaming", "Value is 1 if Postgres is streaming, 0 otherwise.", false, func(s *Status) float64 { return b2f(s.ReplicationState == "streaming") }},
	{"patroni_postgres_in_archive_recovery", "Value is 1 if Postgres is replicating from archive, 0 otherwise.", false, func(s *Status) float64 { return b2f(s.ReplicationState == "in archive recovery") }},
	{"patroni_postgres_server_version", "Version of Postgres (if running), 0 otherwise.", false, func(s *Status) float64 {
		if s.State != "running" {
			return 0
		}
		return float64(s.ServerVersion)
	}},
	{"patroni_cluster_unlocked", "Value is 1 if the cluster is unlocked, 0 if locked.", false, func(s *Status) float64 { return b2f(s.ClusterUnlocked) }},
	{"patroni_failsafe_mode_is_active", "Value is 1 if failsafe mode is active, 0 if inactive.", false, func(s *Status) float64 { return b2f(s.FailsafeActive) }},
	{"patroni_postgres_timeline", "Postgres timeline of this node (if running), 0 otherwise.", true, func(s *Status) float64 { return float64(s.Timeline) }},
	{"patroni_dcs_last_seen", "Epoch timestamp when DCS was last contacted successfully by Patroni.", false, func(s *Status) float64 {
		if s.DCSLastSeen.IsZero() {
			return 0
		}
		return float64(s.DCSLastSeen.Unix())
	}},
	{"patroni_pending_restart", "Value is 1 if the node needs a restart, 0 otherwise.", false, func(s *Status) float64 { return b2f(s.PendingRestart) }},
	{"patroni_is_paused", "Value is 1 if auto failover is disabled, 0 otherwise.", false, func(s *Status) float64 { return b2f(s.Paused) }},
	{"patroni_postgres_state", "Numeric representation of Postgres state. Values: 0=initdb, 1=initdb_failed, 2=custom_bootstrap, 3=custom_bootstrap_failed, 4=creating_replica, 5=running, 6=starting, 7=bootstrap_starting, 8=start_failed, 9=restarting, 10=restart_failed, 11=stopping, 12=stopped, 13=stop_failed, 14=crashed", false, func(s *Status) float64 { return stateIndex(s.State) }},
	{"patroni_failover_priority", "Value is used to set the failover priority of this node.", false, func(s *Status) float64 { return float64(s.Tags.FailoverPriority()) }},
}

// versionNumber turns "1.2.3..." into 10203 as Patroni's patroni_version.
func versionNumber(v string) float64 {
	parts := strings.SplitN(strings.SplitN(v, "-", 2)[0], ".", 3)
	n := 0
	for _, p := range parts {
		d, _ := strconv.Atoi(p)
		n = n*100 + d
	}
	for range 3 - len(parts) {
		n *= 100
	}
	return float64(n)
}

// statusCollector exports the node's Status in Patroni's metric names,
// labelled with scope and name, read at scrape time.
type statusCollector struct {
	status func() *Status
	descs  []*prometheus.Desc
}

func newStatusCollector(status func() *Status, scope, name string) *statusCollector {
	c := &statusCollector{status: status}
	labels := prometheus.Labels{"scope": scope, "name": name}
	for _, d := range metricDefs {
		c.descs = append(c.descs, prometheus.NewDesc(d.name, d.help, nil, labels))
	}
	return c
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.status()
	for i, d := range metricDefs {
		t := prometheus.GaugeValue
		if d.counter {
			t = prometheus.CounterValue
		}
		ch <- prometheus.MustNewConstMetric(c.descs[i], t, d.value(s))
	}
}

// metrics serves GET /metrics in the Prometheus text format.
func (h *apiHandler) metrics(w http.ResponseWriter, r *http.Request) {
	h.node.metricsOnce.Do(func() {
		reg := prometheus.NewRegistry()
		reg.MustRegister(newStatusCollector(h.node.liveStatus, h.node.cfg.Scope, h.node.cfg.Name))
		reg.MustRegister(newSlotCollector(h.node))
		reg.MustRegister(newEventCollector(&h.node.events, h.node.cfg.Scope, h.node.cfg.Name))
		h.node.metricsHandler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	})
	h.node.metricsHandler.ServeHTTP(w, r)
}

// eventCounters count events a snapshot cannot show (they come and go
// between scrapes). They are exported with pgha_ names beside Patroni's
// metrics.
type eventCounters struct {
	// fences counts the times the fence fired while the node led: its lease
	// could not be renewed before the deadline, or the leader key was
	// found to be another's. Each time, leadership was dropped and Postgres
	// stopped at once if it ran.
	fences atomic.Int64
}

// eventCollector exports eventCounters.
type eventCollector struct {
	c      *eventCounters
	fences *prometheus.Desc
}

func newEventCollector(c *eventCounters, scope, name string) *eventCollector {
	labels := prometheus.Labels{"scope": scope, "name": name}
	return &eventCollector{c: c, fences: prometheus.NewDesc("pgha_fence_events_total",
		"Times the fence fired while this node led (lease not renewed before its deadline, or the leader key lost): leadership dropped and Postgres stopped immediately.",
		nil, labels)}
}

func (e *eventCollector) Describe(ch chan<- *prometheus.Desc) { ch <- e.fences }

func (e *eventCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(e.fences, prometheus.CounterValue, float64(e.c.fences.Load()))
}
