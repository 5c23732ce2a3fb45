package etcddcs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/pgha/pgha/dcs"
)

// watchQueueSize bounds each watcher's backlog; past it the backlog is
// replaced by one EventReset.
const watchQueueSize = 1024

// Backoff between failed attempts of the watch loop.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
)

// cache is the local copy of the cluster prefix that the watch loop keeps and
// Cluster and Watch serve from.
type cache struct {
	mu       sync.Mutex
	kvs      map[string]dcs.KeyValue // by relative key
	rev      int64                   // revision the cache reflects
	snap     *dcs.Cluster            // built lazily; nil when stale
	ready    bool
	readyCh  chan struct{} // closed on the first successful load
	changed  chan struct{} // closed and replaced whenever rev advances
	watchers map[*watcher]struct{}
}

func newCache() *cache {
	return &cache{
		kvs:      map[string]dcs.KeyValue{},
		readyCh:  make(chan struct{}),
		changed:  make(chan struct{}),
		watchers: map[*watcher]struct{}{},
	}
}

// snapshotLocked returns the snapshot of the cache, building it if stale.
func (c *cache) snapshotLocked() *dcs.Cluster {
	if c.snap == nil {
		kvs := make([]dcs.KeyValue, 0, len(c.kvs))
		for _, kv := range c.kvs {
			kvs = append(kvs, kv)
		}
		c.snap = dcs.BuildCluster(kvs, c.rev)
	}
	return c.snap
}

// advanceLocked records that the cache reflects rev and wakes waiters.
func (c *cache) advanceLocked(rev int64) {
	if rev <= c.rev {
		return
	}
	c.rev = rev
	c.snap = nil
	close(c.changed)
	c.changed = make(chan struct{})
}

// reset replaces the whole cache with a fresh range at rev and, unless this
// is the first load, tells every watcher with an EventReset.
func (c *cache) reset(kvs map[string]dcs.KeyValue, rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kvs = kvs
	c.snap = nil
	if rev > c.rev {
		c.advanceLocked(rev)
	} else {
		c.rev = rev
	}
	if !c.ready {
		c.ready = true
		close(c.readyCh)
		return
	}
	ev := dcs.Event{Type: dcs.EventReset, Revision: c.rev, Cluster: c.snapshotLocked()}
	for w := range c.watchers {
		w.push(ev)
	}
}

// apply applies one watch response's events in order. Events of one
// revision (one transaction) share the snapshot taken after all of them.
// An event not newer than the cached key is a repeat and is dropped.
func (c *cache) apply(p dcs.Path, events []*clientv3.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var pending []dcs.Event // events of the current revision, awaiting their snapshot
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if len(c.watchers) > 0 {
			snap := c.snapshotLocked()
			for i := range pending {
				pending[i].Cluster = snap
				for w := range c.watchers {
					w.push(pending[i])
				}
			}
		}
		pending = pending[:0]
	}
	for _, e := range events {
		if e == nil || e.Kv == nil {
			continue
		}
		rel, ok := p.Relative(string(e.Kv.Key))
		if !ok {
			continue
		}
		rev := e.Kv.ModRevision
		if cur, ok := c.kvs[rel]; ok && cur.ModRevision >= rev {
			continue
		}
		if rev < c.rev {
			// Older than what the cache already reflects (cannot happen on a
			// continuous watch; a resumed one starts after c.rev).
			continue
		}
		if len(pending) > 0 && pending[0].Revision != rev {
			flush()
		}
		ev := dcs.Event{Key: rel, Revision: rev}
		switch e.Type {
		case mvccpb.PUT:
			ev.Type = dcs.EventPut
			ev.Value = e.Kv.Value
			c.kvs[rel] = dcs.KeyValue{
				Key: rel, Value: e.Kv.Value, CreateRevision: e.Kv.CreateRevision,
				ModRevision: e.Kv.ModRevision, Lease: e.Kv.Lease,
			}
		case mvccpb.DELETE:
			ev.Type = dcs.EventDelete
			delete(c.kvs, rel)
		default:
			continue
		}
		c.snap = nil
		if rev > c.rev {
			c.rev = rev
		}
		pending = append(pending, ev)
	}
	flush()
	// Wake waiters once for the whole response.
	close(c.changed)
	c.changed = make(chan struct{})
}

// progress records a progress notification: no change up to rev.
func (c *cache) progress(rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advanceLocked(rev)
}

// revision returns the revision the cache reflects.
func (c *cache) revision() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rev
}

// lookup returns the cached raw key.
func (c *cache) lookup(rel string) (dcs.KeyValue, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	kv, ok := c.kvs[rel]
	return kv, ok
}

// await waits until the cache reflects rev, ctx ends or done closes, and
// reports whether it got there.
func (c *cache) await(ctx context.Context, done <-chan struct{}, rev int64) bool {
	for {
		c.mu.Lock()
		if c.rev >= rev {
			c.mu.Unlock()
			return true
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		case <-done:
			return false
		}
	}
}

// watcher is one Watch call: a bounded queue drained into out by its own
// goroutine, so a slow reader never blocks the watch loop.
type watcher struct {
	out  chan dcs.Event
	wake chan struct{} // capacity 1

	mu    sync.Mutex
	queue []dcs.Event
}

// push appends ev, or replaces an overflowing backlog with one EventReset
// carrying ev's snapshot. The caller holds cache.mu.
func (w *watcher) push(ev dcs.Event) {
	w.mu.Lock()
	if len(w.queue) >= watchQueueSize {
		w.queue = append(w.queue[:0:0], dcs.Event{Type: dcs.EventReset, Revision: ev.Revision, Cluster: ev.Cluster})
	} else {
		w.queue = append(w.queue, ev)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// pop removes the oldest queued event.
func (w *watcher) pop() (dcs.Event, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 {
		return dcs.Event{}, false
	}
	ev := w.queue[0]
	w.queue[0] = dcs.Event{}
	w.queue = w.queue[1:]
	if len(w.queue) == 0 {
		w.queue = nil
	}
	return ev, true
}

// errCompacted marks a watch that cannot resume: the revision it needs was
// compacted away, so the cache must be rebuilt from a fresh range.
var errCompacted = errors.New("watch revision compacted")

// watchLoop keeps the cache in step with etcd until the store closes: load
// the prefix, watch from the next revision, resume the watch after errors
// from where it stopped, and reload only when the revision it needs was
// compacted.
func (s *Store) watchLoop() {
	defer s.wg.Done()
	ctx := s.ctx
	backoff := minBackoff
	sleep := func() bool {
		t := time.NewTimer(backoff)
		defer t.Stop()
		backoff = min(backoff*2, maxBackoff)
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	loaded := false
	for ctx.Err() == nil {
		if !loaded {
			if err := s.load(ctx); err != nil {
				if ctx.Err() == nil {
					s.log.Warn("cannot read the cluster prefix", "prefix", s.prefix, "error", err)
				}
				if !sleep() {
					return
				}
				continue
			}
			loaded = true
			backoff = minBackoff
		}
		from := s.cache.revision() + 1
		err := s.follow(ctx, from)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errCompacted) {
			s.log.Warn("watch fell behind a compaction; reloading the cluster", "from_rev", from, "error", err)
			loaded = false
			continue
		}
		s.log.Debug("watch ended; resuming", "from_rev", s.cache.revision()+1, "error", err)
		if !sleep() {
			return
		}
	}
}

// load ranges the prefix (serializable, as Patroni's cache does) and
// replaces the cache.
func (s *Store) load(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, s.reqTimeout)
	defer cancel()
	resp, err := s.cli.Get(rctx, s.prefix, clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		return err
	}
	kvs := make(map[string]dcs.KeyValue, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		rel, ok := s.path.Relative(string(kv.Key))
		if !ok {
			continue
		}
		kvs[rel] = dcs.KeyValue{
			Key: rel, Value: kv.Value, CreateRevision: kv.CreateRevision,
			ModRevision: kv.ModRevision, Lease: kv.Lease,
		}
	}
	s.cache.reset(kvs, resp.Header.Revision)
	s.log.Debug("cluster loaded", "rev", resp.Header.Revision, "keys", len(kvs))
	return nil
}

// follow watches the prefix from revision from and applies events until the
// watch fails. It returns errCompacted when from was compacted away.
func (s *Store) follow(ctx context.Context, from int64) error {
	wctx, cancel := context.WithCancel(s.watchCtx(ctx, s.watchGen.Add(1)))
	defer cancel()
	// clientv3 opens the stream inside Watch, which blocks as long as the
	// member it picked does not answer.
	opening := time.AfterFunc(s.reqTimeout, cancel)
	wch := s.cli.Watch(wctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithProgressNotify())
	if !opening.Stop() {
		return fmt.Errorf("watch not opened within %s: its member does not answer", s.reqTimeout)
	}
	// A watch stream on a member that stopped answering (paused, hung)
	// delivers nothing, and gRPC's keepalive takes 10 s and more to drop
	// it. Each tick, when etcd has answered this store with a revision the
	// cache has not reached, ask the stream for progress; if the cache still
	// lags that revision a tick later, the stream is stalled: end it, and
	// the loop resumes the watch on a new stream (each follow has its own
	// stream: see watchCtx), which the balancer gives the next connection.
	tick := time.NewTicker(s.reqTimeout)
	defer tick.Stop()
	var awaited int64
	for {
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case resp, ok = <-wch:
		case <-tick.C:
			cur := s.cache.revision()
			if awaited > cur {
				s.log.Warn("watch stalled: its member does not answer; resuming on another connection", "cache_rev", cur, "etcd_rev", awaited)
				return fmt.Errorf("watch stalled at revision %d, etcd at %d", cur, awaited)
			}
			awaited = 0
			if seen := s.seenRev.Load(); seen > cur {
				awaited = seen
				pctx, pcancel := context.WithTimeout(wctx, s.reqTimeout/4)
				_ = s.cli.RequestProgress(pctx) // a failure shows as a stall next tick
				pcancel()
			}
			continue
		}
		if !ok {
			break
		}
		if resp.CompactRevision != 0 {
			return fmt.Errorf("%w: compacted at %d", errCompacted, resp.CompactRevision)
		}
		if err := resp.Err(); err != nil {
			return err
		}
		if resp.Canceled {
			return errors.New("watch canceled by the server")
		}
		if resp.IsProgressNotify() {
			s.cache.progress(resp.Header.Revision)
			continue
		}
		if len(resp.Events) > 0 {
			s.cache.apply(s.path, resp.Events)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.New("watch channel closed")
}

// watchCtx returns ctx with the metadata of the watch stream of generation
// gen. clientv3 shares one gRPC stream among the watches whose contexts
// carry the same metadata, and would resume a new watch on a stalled
// stream; the generation makes each follow's stream its own. It also
// requires a leader: a member that lost its leader ends the watch.
func (s *Store) watchCtx(ctx context.Context, gen int64) context.Context {
	return metadata.AppendToOutgoingContext(clientv3.WithRequireLeader(ctx), "pgha-watch", strconv.FormatInt(gen, 10))
}

// serveWatcher drains w into its channel until ctx ends or the store closes,
// then unregisters it and closes the channel.
func (s *Store) serveWatcher(ctx context.Context, w *watcher) {
	defer s.wg.Done()
	defer close(w.out)
	defer func() {
		s.cache.mu.Lock()
		delete(s.cache.watchers, w)
		s.cache.mu.Unlock()
	}()
	for {
		if ev, ok := w.pop(); ok {
			select {
			case w.out <- ev:
				continue
			case <-ctx.Done():
				return
			case <-s.done:
				return
			}
		}
		select {
		case <-w.wake:
		case <-ctx.Done():
			return
		case <-s.done:
			return
		}
	}
}

// waitReady waits for the first load of the cache, bounded by ctx and
// RetryTimeout.
func (s *Store) waitReady(ctx context.Context, op string) error {
	select {
	case <-s.cache.readyCh:
		return nil
	default:
	}
	t := time.NewTimer(s.cfg.RetryTimeout)
	defer t.Stop()
	select {
	case <-s.cache.readyCh:
		return nil
	case <-s.done:
		return fmt.Errorf("etcddcs: %s: %w", op, dcs.ErrClosed)
	case <-ctx.Done():
		return fmt.Errorf("etcddcs: %s: cluster not read yet: %w: %w", op, dcs.ErrUnavailable, ctx.Err())
	case <-t.C:
		return fmt.Errorf("etcddcs: %s: cluster not read within %s: %w", op, s.cfg.RetryTimeout, dcs.ErrUnavailable)
	}
}
