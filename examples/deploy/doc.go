// Package deploy is the operator's kit for running pgha on three machines,
// modelled on the users' guide (shared/seed/patroni-ha-guide.txt): systemd
// units for etcd and `pgha run` with hardening options, a three-node set of
// configuration files, the guide's HAProxy configuration, a Prometheus
// scrape configuration with alerting rules, and a Grafana dashboard for
// pgha's /metrics. See README.md in this directory for how to install them
// and README.md at the top of the repository for the runbook that maps
// each step of the guide to its pgha equivalent.
//
// The files are embedded ([Files]) so that tests, and tools of your own, can
// read them. [MetricNames] lists the metric names a PromQL expression
// reads, and [DashboardQueries] and [AlertQueries] list the expressions of
// a Grafana dashboard and of a Prometheus rules file: this package's test
// uses them to check that every metric the dashboard and the alerts use is
// one a running pgha node exports.
package deploy
