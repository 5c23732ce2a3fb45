package faultsuite

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs/etcddcs"
	"github.com/pgha/pgha/internal/cluster"
	"github.com/pgha/pgha/internal/faultproxy"
	"github.com/pgha/pgha/internal/history"
	"github.com/pgha/pgha/routing"
)

// d11Router is one router of D11 with its own path to etcd (a proxy per
// member) and its writer's results.
type d11Router struct {
	name    string
	bound   time.Duration // MaxStaleness; 0 keeps the last topology
	proxies []*faultproxy.Proxy
	router  *routing.Router

	mu   sync.Mutex
	acks []history.Op // acknowledged writes
	errs map[string]int
	last string
}

func (d *d11Router) record(op history.Op, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		d.acks = append(d.acks, op)
		return
	}
	kind := "other"
	switch {
	case errors.Is(err, routing.ErrStaleView):
		kind = "stale view (fail closed)"
	case errors.Is(err, routing.ErrNoPrimary):
		kind = "no primary"
	case errors.Is(err, routing.ErrNotPrimary), errors.Is(err, routing.ErrFenced):
		kind = "not primary / fenced"
	}
	d.errs[kind]++
	d.last = err.Error()
}

func (d *d11Router) acked(from, to time.Duration, node string) (n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, op := range d.acks {
		if op.Invoke >= from && op.Invoke < to && (node == "" || op.Stamp.Node == node) {
			n++
		}
	}
	return n
}

func (d *d11Router) cut() {
	for _, p := range d.proxies {
		p.Pause()
		p.CutAll() // etcd clients reconnect into the blackhole
	}
}

func (d *d11Router) heal() {
	for _, p := range d.proxies {
		p.Resume()
	}
}

// newD11Router builds a router whose etcd store reaches every member
// through its own proxies.
func newD11Router(t *testing.T, e *env, name string, bound time.Duration) *d11Router {
	d := &d11Router{name: name, bound: bound, errs: map[string]int{}}
	var eps []string
	for _, m := range e.ec.Members {
		p, err := faultproxy.New(m.ClientAddr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = p.Close() })
		d.proxies = append(d.proxies, p)
		eps = append(eps, "http://"+p.Addr())
	}
	t.Cleanup(d.heal) // before the proxies close: a paused link holds Close up
	store, err := etcddcs.New(within(t, 10*time.Second), etcddcs.Config{Endpoints: eps, Path: e.c.Path(), RetryTimeout: retryTimeout})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	d.router, err = routing.New(within(t, 30*time.Second), routing.Config{
		Source:       routing.FromDCS(store),
		ConnString:   fmt.Sprintf("user=postgres password=%s dbname=postgres sslmode=disable connect_timeout=2 application_name=pgha-faultsuite-d11", cluster.SuperuserPassword),
		MaxStaleness: bound,
	})
	require.NoError(t, err)
	t.Cleanup(d.router.Close)
	return d
}

// D11: routers cut from the DCS (every byte to etcd blackholed) while the
// cluster switches over. Two routers write through the same cluster: one
// with MaxStaleness = ttl (fail closed), one with the default (keep the
// last topology). Verified: the fail-closed router acknowledges no write
// invoked later than MaxStaleness after the cut, and neither router
// acknowledges a write on the new primary it has not seen; the default
// router keeps writing to the old primary until the switchover demotes it
// and then gets errors, never acknowledgements, from it; after healing both
// follow the new primary; the history checker finds no two writers and no
// lost or unexpected values.
func etcdD11(t *testing.T, e *env) {
	r := e.begin(t, "D11-"+e.mode)
	p := r.p
	routers := []*d11Router{newD11Router(t, e, "fail-closed", ttl), newD11Router(t, e, "default", 0)}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	const idBase = int64(1) << 40 // apart from the workload's ids
	var idMu sync.Mutex
	nextID := idBase
	for _, d := range routers {
		wg.Go(func() {
			process := r.h.NewProcess()
			for ctx.Err() == nil {
				idMu.Lock()
				nextID++
				id := nextID
				idMu.Unlock()
				op, _, err := routerWriteOp(ctx, d.router, r.h, r.w.Table, e.names, process, id, 2*time.Second)
				if ctx.Err() != nil && op.Result != history.OK {
					if op.Result == history.Info {
						// Cut short by the end of the test: it may have
						// committed, so the checker must know of it.
						r.h.Add(op)
					}
					return
				}
				r.h.Add(op)
				d.record(op, err)
				if op.Result == history.Info {
					process = r.h.NewProcess()
				}
				if err != nil {
					time.Sleep(50 * time.Millisecond)
				} else {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	for _, d := range routers {
		require.NoError(t, cluster.Eventually(within(t, 30*time.Second), func(context.Context) error {
			if d.acked(0, r.h.Since()+time.Hour, p.Name) < 5 {
				return fmt.Errorf("router %s: fewer than 5 acknowledged writes on %s", d.name, p.Name)
			}
			return nil
		}))
	}

	cutAt := r.h.Since()
	for _, d := range routers {
		d.cut()
	}
	time.Sleep(time.Second) // the cut's first second, with the old primary leading
	switchAt := r.h.Since()
	require.NoError(t, e.c.RequestFailover(within(t, 10*time.Second), p.Name, ""))
	q, err := e.c.WaitPrimary(within(t, failoverBudget), p)
	require.NoError(t, err, "the switchover completes while the routers are cut off")
	require.NoError(t, r.waitOK(within(t, 30*time.Second), q.Name, switchAt))
	firstNew, _ := firstOKOn(r.h, q.Name, switchAt)
	// The cut lasts three bounds at least, and two seconds past the switchover.
	for r.h.Since() < max(cutAt+3*ttl, firstNew+2*time.Second) {
		time.Sleep(100 * time.Millisecond)
	}
	healAt := r.h.Since()
	fc, def := routers[0], routers[1]
	closedAfter := fc.acked(cutAt+ttl, healAt, "")
	fcOld := fc.acked(cutAt, healAt, p.Name)
	fcNew := fc.acked(cutAt, healAt, q.Name)
	defOld := def.acked(cutAt, healAt, p.Name)
	defNew := def.acked(cutAt, healAt, q.Name)
	defOldAfter := def.acked(firstNew, healAt, p.Name)
	for _, d := range routers {
		d.heal()
	}
	for _, d := range routers {
		require.NoError(t, cluster.Eventually(within(t, time.Minute), func(context.Context) error {
			if d.acked(healAt, r.h.Since()+time.Hour, q.Name) == 0 {
				return fmt.Errorf("router %s: no write acknowledged by the new primary %s since healing (last error: %s)", d.name, q.Name, d.last)
			}
			return nil
		}), "router %s follows the new primary after healing", d.name)
	}
	healed := r.h.Since()
	stop()
	wg.Wait()

	require.Zero(t, closedAfter, "the fail-closed router acknowledged writes invoked more than MaxStaleness (%s) after the cut", ttl)
	require.Zero(t, fcNew, "the fail-closed router wrote to %s, a leader it never saw, while cut off", q.Name)
	require.Zero(t, defNew, "the default router wrote to %s, a leader it never saw, while cut off", q.Name)
	require.Zero(t, defOldAfter, "the default router got acknowledgements from the old primary %s after the new one acknowledged writes", p.Name)
	require.Positive(t, fc.router.Stats().StaleAcquisitions, "the fail-closed router refused write acquisitions")
	o := r.finish(expect{})
	fc.mu.Lock()
	fcErrs := fmt.Sprint(fc.errs)
	fc.mu.Unlock()
	def.mu.Lock()
	defErrs := fmt.Sprint(def.errs)
	def.mu.Unlock()
	t.Logf("D11 %s: injected: both routers' etcd links blackholed at %s for %s, a switchover %s -> %s requested 1s into the cut "+
		"(%s acknowledged its first write %s after the cut); "+
		"verified: the fail-closed router (MaxStaleness %s) acknowledged %d writes on %s in the cut, none invoked after the bound, none on %s (errors %s, %d stale acquisitions); "+
		"the default router acknowledged %d writes on %s in the cut, none after %s's first ack, none on %s (errors %s); "+
		"both wrote to %s within %s of healing; no two writers; %s",
		e.mode, cutAt.Round(time.Millisecond), (healAt - cutAt).Round(time.Millisecond), p.Name, q.Name, q.Name, (firstNew - cutAt).Round(time.Millisecond),
		ttl, fcOld, p.Name, q.Name, fcErrs, fc.router.Stats().StaleAcquisitions,
		defOld, p.Name, q.Name, q.Name, defErrs,
		q.Name, (healed - healAt).Round(time.Millisecond), o)
}

// firstOKOn is the completion of the first acknowledged write on node
// invoked after the given time.
func firstOKOn(h *history.History, node string, after time.Duration) (time.Duration, bool) {
	var first time.Duration
	found := false
	for _, op := range h.Ops() {
		if op.Kind == history.Write && op.Result == history.OK && op.Stamp.Node == node && op.Invoke > after && (!found || op.Complete < first) {
			first, found = op.Complete, true
		}
	}
	return first, found
}
