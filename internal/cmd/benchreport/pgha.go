package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/internal/cluster"
)

// pghaSystem is a 3-node pgha cluster of nodeproc processes (package
// cluster), with its own embedded etcd.
type pghaSystem struct {
	c     *cluster.Cluster
	build string
}

func startPgha(ctx context.Context, t timing, verbose bool) (_ *pghaSystem, err error) {
	s := &pghaSystem{}
	if s.build, err = os.MkdirTemp("", "pgha-benchreport-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = s.close()
		}
	}()
	bin, err := cluster.BuildNodeProc(ctx, s.build)
	if err != nil {
		return nil, err
	}
	var out io.Writer = io.Discard
	if verbose {
		out = os.Stderr
	}
	s.c, err = cluster.New(ctx, cluster.Options{
		Mode: cluster.Processes, NodeProc: bin, Namespace: "pgha-benchreport",
		Dynamic: map[string]any{"ttl": t.ttl, "loop_wait": t.loopWait, "retry_timeout": t.retry,
			"postgresql": map[string]any{"use_pg_rewind": true, "use_slots": false}},
		Logger: hclog.New(&hclog.LoggerOptions{Name: "pgha", Output: out, Level: hclog.Info}),
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (s *pghaSystem) label() string { return "pgha" }

func (s *pghaSystem) nodes() []bnode {
	var out []bnode
	for _, n := range s.c.Nodes() {
		u, _ := url.Parse(n.APIURL())
		out = append(out, bnode{name: n.Name, pgPort: n.Port(), restAddr: u.Host, dataDir: n.DataDir()})
	}
	return out
}

func (s *pghaSystem) running(i int) bool { return s.c.Nodes()[i].Running() }

func (s *pghaSystem) agentPIDs(i int) []int {
	pid := s.c.Nodes()[i].PID()
	if pid == 0 {
		return nil
	}
	return procTree(pid)
}

func (s *pghaSystem) killNode(i int) error { return s.c.Nodes()[i].Kill() }

func (s *pghaSystem) startNode(ctx context.Context, i int) error { return s.c.Nodes()[i].Start(ctx) }

func (s *pghaSystem) killPostgres(i int) error {
	return cluster.KillPostgresTree(s.c.Nodes()[i].DataDir())
}

func (s *pghaSystem) etcd() (*clientv3.Client, string, dcs.Path) {
	return s.c.Etcd(), s.c.EtcdAddr(), s.c.Path()
}

func (s *pghaSystem) close() error {
	var err error
	if s.c != nil {
		err = s.c.Close()
	}
	if s.build != "" {
		_ = os.RemoveAll(s.build)
	}
	if err != nil {
		return fmt.Errorf("pgha: %w", err)
	}
	return nil
}
