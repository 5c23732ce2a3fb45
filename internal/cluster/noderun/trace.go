package noderun

import (
	"context"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/ha"
	"github.com/pgha/pgha/pg"
)

// Tracing wrappers (Spec.Trace): they log the start-to-end duration of the
// calls that make up a failover (the DCS, Postgres, the peer probes) and
// every watch event's arrival, so a benchmark's figures can be explained
// from the node's log.

type tracedStore struct {
	dcs.Store
	log hclog.Logger
}

func (s tracedStore) Cluster(ctx context.Context) (*dcs.Cluster, error) {
	start := time.Now()
	c, err := s.Store.Cluster(ctx)
	s.log.Info("dcs Cluster", "took", time.Since(start), "error", err)
	return c, err
}

func (s tracedStore) Watch(ctx context.Context) (<-chan dcs.Event, error) {
	ch, err := s.Store.Watch(ctx)
	if err != nil {
		return ch, err
	}
	out := make(chan dcs.Event)
	go func() {
		defer close(out)
		for ev := range ch {
			s.log.Info("dcs watch event", "key", ev.Key, "type", ev.Type)
			select {
			case out <- ev:
			case <-ctx.Done():
				for range ch { // drain until the store closes it
				}
				return
			}
		}
	}()
	return out, nil
}

func (s tracedStore) AcquireLeader(ctx context.Context) (dcs.Lease, error) {
	start := time.Now()
	l, err := s.Store.AcquireLeader(ctx)
	s.log.Info("dcs AcquireLeader", "took", time.Since(start), "error", err)
	return l, err
}

func (s tracedStore) ReleaseLeader(ctx context.Context, st *dcs.Status) error {
	start := time.Now()
	err := s.Store.ReleaseLeader(ctx, st)
	s.log.Info("dcs ReleaseLeader", "took", time.Since(start), "error", err)
	return err
}

func (s tracedStore) PutMember(ctx context.Context, d dcs.MemberData) error {
	start := time.Now()
	err := s.Store.PutMember(ctx, d)
	s.log.Info("dcs PutMember", "took", time.Since(start), "error", err)
	return err
}

func (s tracedStore) SetStatus(ctx context.Context, st dcs.Status) error {
	start := time.Now()
	err := s.Store.SetStatus(ctx, st)
	s.log.Info("dcs SetStatus", "took", time.Since(start), "error", err)
	return err
}

func (s tracedStore) SetFailover(ctx context.Context, f dcs.Failover, cond dcs.Precondition) (int64, error) {
	start := time.Now()
	r, err := s.Store.SetFailover(ctx, f, cond)
	s.log.Info("dcs SetFailover", "took", time.Since(start), "error", err)
	return r, err
}

type tracedPG struct {
	ha.Postgres
	log hclog.Logger
}

func (p tracedPG) Status(ctx context.Context) (pg.Status, error) {
	start := time.Now()
	st, err := p.Postgres.Status(ctx)
	p.log.Info("pg Status", "took", time.Since(start), "role", st.Role, "error", err)
	return st, err
}

func (p tracedPG) Promote(ctx context.Context) error {
	start := time.Now()
	err := p.Postgres.Promote(ctx)
	p.log.Info("pg Promote", "took", time.Since(start), "error", err)
	return err
}

func (p tracedPG) Stop(ctx context.Context, mode pg.StopMode) error {
	start := time.Now()
	err := p.Postgres.Stop(ctx, mode)
	p.log.Info("pg Stop", "mode", mode.String(), "took", time.Since(start), "error", err)
	return err
}

func (p tracedPG) Start(ctx context.Context) error {
	start := time.Now()
	err := p.Postgres.Start(ctx)
	p.log.Info("pg Start", "took", time.Since(start), "error", err)
	return err
}

func (p tracedPG) Checkpoint(ctx context.Context) error {
	start := time.Now()
	err := p.Postgres.Checkpoint(ctx)
	p.log.Info("pg Checkpoint", "took", time.Since(start), "error", err)
	return err
}

func (p tracedPG) ConfigurePrimary(ctx context.Context) error {
	start := time.Now()
	err := p.Postgres.ConfigurePrimary(ctx)
	p.log.Info("pg ConfigurePrimary", "took", time.Since(start), "error", err)
	return err
}

func (p tracedPG) ConfigureStandby(ctx context.Context, up pg.Upstream) error {
	start := time.Now()
	err := p.Postgres.ConfigureStandby(ctx, up)
	p.log.Info("pg ConfigureStandby", "took", time.Since(start), "error", err)
	return err
}

type tracedTransport struct {
	rt  http.RoundTripper
	log hclog.Logger
}

func (t tracedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.rt.RoundTrip(r)
	code := 0
	if resp != nil {
		code = resp.StatusCode
	}
	t.log.Info("http", "method", r.Method, "url", r.URL.String(), "took", time.Since(start), "code", code, "error", err)
	return resp, err
}

// The synchronous-mode methods pass through (the wrapped Postgres is a
// *pg.Instance or a freezePG, both ha.SyncPostgres).

func (p tracedPG) SyncStatus(ctx context.Context) (pg.SyncState, error) {
	return p.Postgres.(ha.SyncPostgres).SyncStatus(ctx)
}

func (p tracedPG) SetSynchronousStandbyNames(ctx context.Context, value string) error {
	start := time.Now()
	err := p.Postgres.(ha.SyncPostgres).SetSynchronousStandbyNames(ctx, value)
	p.log.Info("pg SetSynchronousStandbyNames", "value", value, "took", time.Since(start), "error", err)
	return err
}

func (p tracedPG) ClearSynchronousStandbyNames(ctx context.Context) error {
	return p.Postgres.(ha.SyncPostgres).ClearSynchronousStandbyNames(ctx)
}

// The slot methods pass through too (ha.SlotPostgres), so traced runs
// manage replication slots like untraced ones.

func (p tracedPG) WithConn(ctx context.Context, fn func(ctx context.Context, conn *pgx.Conn) error) error {
	return p.Postgres.(ha.SlotPostgres).WithConn(ctx, fn)
}

func (p tracedPG) SetStandbySlot(name string) error {
	return p.Postgres.(ha.SlotPostgres).SetStandbySlot(name)
}

var (
	_ ha.SyncPostgres = tracedPG{}
	_ ha.SlotPostgres = tracedPG{}
)
