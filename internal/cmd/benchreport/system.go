package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/dcs"
)

// bnode is one node of a system under test.
type bnode struct {
	name     string
	pgPort   int
	restAddr string // host:port of the Patroni-compatible REST API
	dataDir  string
}

// system is a 3-node HA cluster under test: pgha or Patroni.
type system interface {
	// label names the system in the table.
	label() string
	nodes() []bnode
	// running reports whether node i's agent was started and not killed.
	running(i int) bool
	// agentPIDs returns the pids of node i's agent (not PostgreSQL).
	agentPIDs(i int) []int
	// killNode SIGKILLs node i's agent, then its postmaster and every
	// process the postmaster forked.
	killNode(i int) error
	// startNode starts node i's agent again (same directories and ports).
	startNode(ctx context.Context, i int) error
	// killPostgres SIGKILLs node i's postmaster and its children; the
	// agent lives.
	killPostgres(i int) error
	// etcd returns a client of the system's etcd, its client host:port and
	// the cluster's place in it.
	etcd() (*clientv3.Client, string, dcs.Path)
	close() error
}

const superPassword = "su-secret"

// connString reaches node port p as the superuser.
func connString(p int) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres sslmode=disable connect_timeout=2 application_name=benchreport",
		p, superPassword)
}

// waitStable waits until exactly one node accepts writes, the leader key
// names it, and every other running node's WAL receiver streams from it;
// it returns that node's index. Role labels play no part.
func waitStable(ctx context.Context, s system) (int, error) {
	var last error
	for {
		i, err := stable(ctx, s)
		if err == nil {
			return i, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("%s: not stable: %w (last: %v)", s.label(), ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func stable(ctx context.Context, s system) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	nodes := s.nodes()
	primary := -1
	upstream := map[int]int{}
	for i, n := range nodes {
		if !s.running(i) {
			continue
		}
		cn, err := pgx.Connect(ctx, connString(n.pgPort))
		if err != nil {
			return -1, fmt.Errorf("%s: %w", n.name, err)
		}
		var inRecovery bool
		var sender *int32
		err = cn.QueryRow(ctx, "SELECT pg_is_in_recovery(), (SELECT sender_port FROM pg_stat_wal_receiver WHERE status = 'streaming')").
			Scan(&inRecovery, &sender)
		_ = cn.Close(context.Background())
		if err != nil {
			return -1, fmt.Errorf("%s: %w", n.name, err)
		}
		if !inRecovery {
			if primary >= 0 {
				return -1, fmt.Errorf("two writable nodes: %s and %s", nodes[primary].name, n.name)
			}
			primary = i
		} else if sender != nil {
			upstream[i] = int(*sender)
		}
	}
	if primary < 0 {
		return -1, errors.New("no writable node")
	}
	cl, _, path := s.etcd()
	resp, err := cl.Get(ctx, path.Key(dcs.KeyLeader))
	if err != nil {
		return -1, err
	}
	if len(resp.Kvs) == 0 || string(resp.Kvs[0].Value) != nodes[primary].name {
		return -1, fmt.Errorf("%s accepts writes but the leader key does not name it", nodes[primary].name)
	}
	for i, n := range nodes {
		if i == primary || !s.running(i) {
			continue
		}
		if upstream[i] != nodes[primary].pgPort {
			return -1, fmt.Errorf("%s does not stream from %s", n.name, nodes[primary].name)
		}
	}
	return primary, nil
}

// switchover asks the leader's REST API for a switchover to any healthy
// member, as patronictl switchover does, and returns the answer.
func switchover(ctx context.Context, n bnode) (int, string, error) {
	body, _ := json.Marshal(map[string]string{"leader": n.name})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+n.restAddr+"/switchover", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

// procTree returns pid and its live descendants whose command is not
// postgres.
func procTree(pid int) []int {
	children := map[int][]int{}
	comm := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(p)
		if err != nil {
			continue
		}
		children[st.ppid] = append(children[st.ppid], p)
		comm[p] = st.comm
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		if comm[p] == "postgres" {
			return
		}
		out = append(out, p)
		for _, c := range children[p] {
			walk(c)
		}
	}
	if _, ok := comm[pid]; ok {
		walk(pid)
	}
	return out
}

type procStat struct {
	comm     string
	ppid     int
	cpuTicks int64 // utime + stime
}

// readStat reads /proc/pid/stat (and the RSS from /proc/pid/status).
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	st := procStat{comm: string(b[open+1 : end])}
	f := strings.Fields(string(b[end+1:]))
	// f[0]=state f[1]=ppid ... f[11]=utime f[12]=stime
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("short /proc/%d/stat", pid)
	}
	st.ppid, _ = strconv.Atoi(f[1])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stt, _ := strconv.ParseInt(f[12], 10, 64)
	st.cpuTicks = ut + stt
	return st, nil
}

// rssKiB returns VmRSS of pid in KiB.
func rssKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// etcdMessages returns the sum of grpc_server_msg_received_total from the
// etcd metrics endpoint at addr.
func etcdMessages(ctx context.Context, addr string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var sum float64
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "grpc_server_msg_received_total") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		sum += v
		found = true
	}
	if !found {
		return 0, errors.New("etcd metrics: no grpc_server_msg_received_total")
	}
	return sum, nil
}
