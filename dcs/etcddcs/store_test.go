package etcddcs_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/etcddcs"
	"github.com/pgha/pgha/internal/faultproxy"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	good := etcddcs.Config{Endpoints: []string{"http://127.0.0.1:2379"}, Path: dcs.Path{Scope: "c"}, Name: "n"}
	require.NoError(t, good.Validate())

	cases := []struct {
		name  string
		tweak func(*etcddcs.Config)
		want  []string
	}{
		{"no scope", func(c *etcddcs.Config) { c.Path = dcs.Path{} }, []string{"scope is required"}},
		{"no endpoints", func(c *etcddcs.Config) { c.Endpoints = nil }, []string{"at least one endpoint"}},
		{"blank endpoint", func(c *etcddcs.Config) { c.Endpoints = []string{" "} }, []string{"endpoint 0"}},
		{"slash in name", func(c *etcddcs.Config) { c.Name = "a/b" }, []string{"must not contain '/'"}},
		{"tls and files", func(c *etcddcs.Config) { c.TLS = &tls.Config{}; c.CAFile = "ca.pem" }, []string{"either TLS"}},
		{"cert without key", func(c *etcddcs.Config) { c.CertFile = "c.pem" }, []string{"CertFile and KeyFile"}},
		{"user without password", func(c *etcddcs.Config) { c.Username = "u" }, []string{"Username and Password"}},
		{"negative timeouts", func(c *etcddcs.Config) { c.RetryTimeout = -1; c.DialTimeout = -1 }, []string{"RetryTimeout", "DialTimeout"}},
		{"client and endpoints", func(c *etcddcs.Config) { c.Client = admin }, []string{"with Client set"}},
		{"everything at once", func(c *etcddcs.Config) {
			c.Path = dcs.Path{}
			c.Endpoints = nil
			c.Username = "u"
		}, []string{"scope is required", "at least one endpoint", "Username and Password"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.tweak(&c)
			err := c.Validate()
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
			_, err = etcddcs.New(context.Background(), c)
			require.Error(t, err, "New validates")
		})
	}
}

func TestNewRejectsMissingTLSFiles(t *testing.T) {
	t.Parallel()
	_, err := etcddcs.New(context.Background(), etcddcs.Config{
		Endpoints: []string{"https://127.0.0.1:1"}, Path: dcs.Path{Scope: "c"},
		CertFile: "/nonexistent/c.pem", KeyFile: "/nonexistent/k.pem",
	})
	require.ErrorContains(t, err, "TLS files")
}

func TestRequestTimeoutDerivedFromRetryTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		retry     time.Duration
		endpoints int
		want      time.Duration
	}{
		{0, 1, 10 * time.Second},
		{10 * time.Second, 3, 10 * time.Second / 3},
		{2 * time.Second, 3, time.Second},
	} {
		eps := make([]string, tc.endpoints)
		for i := range eps {
			eps[i] = "http://" + etcdAddr
		}
		s, err := etcddcs.New(testCtx(t), etcddcs.Config{Endpoints: eps, Path: uniquePath(t), RetryTimeout: tc.retry})
		require.NoError(t, err)
		require.Equal(t, tc.want, s.RequestTimeout(), "retry %s over %d endpoints", tc.retry, tc.endpoints)
		require.NoError(t, s.Close())
	}
}

func TestKeepAliveSentAndTTL(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	s, _ := h.newStore(t, "a", nil)
	ctx := testCtx(t)

	before := time.Now()
	l, err := s.KeepAlive(ctx, 1500*time.Millisecond)
	after := time.Now()
	require.NoError(t, err)
	require.Equal(t, 2*time.Second, l.TTL, "TTL is rounded up to etcd's whole seconds")
	require.False(t, l.Sent.Before(before))
	require.False(t, l.Sent.After(after))
	require.Equal(t, l.ID, s.LeaseID())

	// etcd's own view: the lease has the TTL we report, and the remaining
	// time is consistent with Sent + TTL.
	ttl, err := admin.TimeToLive(ctx, clientv3.LeaseID(l.ID))
	require.NoError(t, err)
	require.Equal(t, int64(2), ttl.GrantedTTL)

	// A renewal keeps the lease and reports a later Sent.
	l2, err := s.KeepAlive(ctx, 2*time.Second)
	require.NoError(t, err)
	require.Equal(t, l.ID, l2.ID, "same TTL in seconds: the lease is renewed, not replaced")
	require.False(t, l2.Sent.Before(l.Sent))

	_, err = s.KeepAlive(ctx, 0)
	require.ErrorIs(t, err, dcs.ErrInvalidValue)
}

func TestTTLChangeRevokesOldLease(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	s, _ := h.newStore(t, "a", nil)
	ctx := testCtx(t)
	l1, err := s.KeepAlive(ctx, 30*time.Second)
	require.NoError(t, err)
	require.NoError(t, s.PutMember(ctx, dcs.MemberData{Role: dcs.RoleReplica}))
	_, err = s.AcquireLeader(ctx)
	require.NoError(t, err)
	before, _ := h.ReadRaw(t, dcs.KeyLeader)

	l2, err := s.KeepAlive(ctx, 20*time.Second)
	require.NoError(t, err)
	require.NotEqual(t, l1.ID, l2.ID)

	ttl, err := admin.TimeToLive(ctx, clientv3.LeaseID(l1.ID))
	require.NoError(t, err)
	require.Equal(t, int64(-1), ttl.TTL, "the old lease is revoked")
	after, ok := h.ReadRaw(t, dcs.KeyLeader)
	require.True(t, ok)
	require.Equal(t, before.CreateRevision, after.CreateRevision, "same tenure: the key was moved, not re-created")
	require.Equal(t, l2.ID, after.Lease)
	m, _ := h.ReadRaw(t, dcs.KeyMembers+"a")
	require.Equal(t, l2.ID, m.Lease)
	require.JSONEq(t, `{"conn_url":"","api_url":"","state":"","role":"replica","version":""}`, string(m.Value), "value kept")
}

func TestAcquireAfterExternalRevoke(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	s, _ := h.newStore(t, "a", nil)
	ctx := testCtx(t)
	l1, err := s.KeepAlive(ctx, 30*time.Second)
	require.NoError(t, err)
	require.NoError(t, s.PutMember(ctx, dcs.MemberData{Role: dcs.RoleReplica}))
	h.ExpireLease(t, "a")

	// AcquireLeader's keepalive finds the lease gone and grants a new one.
	l2, err := s.AcquireLeader(ctx)
	require.NoError(t, err)
	require.NotEqual(t, l1.ID, l2.ID)
	raw, _ := h.ReadRaw(t, dcs.KeyLeader)
	require.Equal(t, l2.ID, raw.Lease)

	// The member key (gone with the old lease) is republished on the new one,
	// even though the data did not change.
	require.NoError(t, s.PutMember(ctx, dcs.MemberData{Role: dcs.RoleReplica}))
	m, ok := h.ReadRaw(t, dcs.KeyMembers+"a")
	require.True(t, ok)
	require.Equal(t, l2.ID, m.Lease)
}

func TestRefreshLeaderAfterLeaseLost(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	a, _ := h.newStore(t, "a", nil)
	b, _ := h.newStore(t, "b", nil)
	ctx := testCtx(t)
	_, err := a.AcquireLeader(ctx)
	require.NoError(t, err)
	h.ExpireLease(t, "a")
	_, err = b.AcquireLeader(ctx)
	require.NoError(t, err)

	// a's lease expired: its tenure is over, whoever holds the key now.
	_, err = a.RefreshLeader(ctx)
	require.ErrorIs(t, err, dcs.ErrNotLeader)
	require.ErrorIs(t, err, dcs.ErrSessionExpired)
	require.ErrorIs(t, a.SetStatus(ctx, dcs.Status{Optime: 1}), dcs.ErrNotLeader)
	// On its new lease it is still not the holder.
	_, err = a.RefreshLeader(ctx)
	require.ErrorIs(t, err, dcs.ErrNotLeader)
	require.ErrorContains(t, err, `"b"`)

	// b's guarded writes go through; a CAS conflict is not a lost fence.
	_, err = b.SetSync(ctx, dcs.SyncState{Leader: "b"}, dcs.IfRevision(12345))
	require.ErrorIs(t, err, dcs.ErrConflict)
	require.NotErrorIs(t, err, dcs.ErrNotLeader)
}

func TestReadOnlyLeaderWrites(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ro, _ := h.newStore(t, "", nil)
	ctx := testCtx(t)
	require.ErrorIs(t, ro.SetStatus(ctx, dcs.Status{}), dcs.ErrNoSession)
	require.ErrorIs(t, ro.ReleaseLeader(ctx, nil), dcs.ErrNoSession)
	_, err := ro.RefreshLeader(ctx)
	require.ErrorIs(t, err, dcs.ErrNoSession)
	require.ErrorIs(t, ro.Resign(ctx), dcs.ErrNoSession)
	require.NoError(t, ro.InitializeRace(ctx, ""))
	require.NoError(t, ro.DeleteCluster(ctx))
}

func TestUnavailableWhilePaused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	s, p := h.newStore(t, "a", func(c *etcddcs.Config) { c.RetryTimeout = time.Second })
	ctx := testCtx(t)
	_, err := s.AcquireLeader(ctx)
	require.NoError(t, err)

	p.Pause()
	p.CutAll() // the client reconnects into the blackhole
	start := time.Now()
	_, err = s.RefreshLeader(ctx)
	require.ErrorIs(t, err, dcs.ErrUnavailable)
	require.True(t, dcs.IsTransient(err))
	require.Less(t, time.Since(start), 5*time.Second, "bounded by the request timeout")
	require.ErrorIs(t, s.SetStatus(ctx, dcs.Status{Optime: 1}), dcs.ErrUnavailable)

	// The cache still answers (stale, by design); Confirm says it may be.
	c, err := s.Cluster(ctx)
	require.NoError(t, err)
	require.Equal(t, "a", c.LeaderName())
	_, err = s.Confirm(ctx)
	require.ErrorIs(t, err, dcs.ErrUnavailable)

	p.Resume()
	require.Eventually(t, func() bool {
		_, err := s.RefreshLeader(ctx)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, s.SetStatus(ctx, dcs.Status{Optime: 1}))
	_, err = s.Confirm(ctx)
	require.NoError(t, err)
}

func TestClusterUnavailableBeforeFirstRead(t *testing.T) {
	t.Parallel()
	p, err := faultproxy.New(etcdAddr)
	require.NoError(t, err)
	defer p.Close()
	p.Pause()
	s2, err := etcddcs.New(testCtx(t), etcddcs.Config{
		Endpoints: []string{"http://" + p.Addr()}, Path: uniquePath(t), Name: "a", RetryTimeout: time.Second,
		Logger: testLogger(t, "a"),
	})
	require.NoError(t, err, "New does not wait for etcd")
	defer s2.Close()
	_, err = s2.Cluster(testCtx(t))
	require.ErrorIs(t, err, dcs.ErrUnavailable)
	_, err = s2.Watch(testCtx(t))
	require.ErrorIs(t, err, dcs.ErrUnavailable)

	p.Resume()
	require.Eventually(t, func() bool {
		_, err := s2.Cluster(testCtx(t))
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
}

func TestClosedStore(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	s, _ := h.newStore(t, "a", nil)
	ctx := testCtx(t)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	calls := map[string]func() error{
		"Cluster":          func() error { _, err := s.Cluster(ctx); return err },
		"Watch":            func() error { _, err := s.Watch(ctx); return err },
		"KeepAlive":        func() error { _, err := s.KeepAlive(ctx, time.Minute); return err },
		"PutMember":        func() error { return s.PutMember(ctx, dcs.MemberData{}) },
		"Resign":           func() error { return s.Resign(ctx) },
		"AcquireLeader":    func() error { _, err := s.AcquireLeader(ctx); return err },
		"RefreshLeader":    func() error { _, err := s.RefreshLeader(ctx); return err },
		"ReleaseLeader":    func() error { return s.ReleaseLeader(ctx, nil) },
		"SetSync":          func() error { _, err := s.SetSync(ctx, dcs.SyncState{}, dcs.Unconditional); return err },
		"DeleteSync":       func() error { return s.DeleteSync(ctx, dcs.Unconditional) },
		"SetHistory":       func() error { return s.SetHistory(ctx, nil) },
		"SetStatus":        func() error { return s.SetStatus(ctx, dcs.Status{}) },
		"SetFailsafe":      func() error { return s.SetFailsafe(ctx, nil) },
		"InitializeRace":   func() error { return s.InitializeRace(ctx, "") },
		"SetInitialize":    func() error { return s.SetInitialize(ctx, "1") },
		"CancelInitialize": func() error { return s.CancelInitialize(ctx) },
		"SetConfig":        func() error { _, err := s.SetConfig(ctx, nil, dcs.Unconditional); return err },
		"SetFailover":      func() error { _, err := s.SetFailover(ctx, dcs.Failover{}, dcs.Unconditional); return err },
		"DeleteCluster":    func() error { return s.DeleteCluster(ctx) },
	}
	for name, call := range calls {
		require.ErrorIs(t, call(), dcs.ErrClosed, name)
	}
}

func TestExternalClientLeftOpen(t *testing.T) {
	t.Parallel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + etcdAddr}, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer cli.Close()
	s, err := etcddcs.New(testCtx(t), etcddcs.Config{Client: cli, Path: uniquePath(t), Name: "a"})
	require.NoError(t, err)
	require.Same(t, cli, s.Client())
	_, err = s.AcquireLeader(testCtx(t))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = cli.Get(testCtx(t), "x")
	require.NoError(t, err, "the caller's client is still usable")
}

// TestCanceledDuringRequest: a caller's cancellation is reported as such,
// not as unavailability.
func TestCanceledDuringRequest(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	s, p := h.newStore(t, "a", nil)
	_, err := s.KeepAlive(testCtx(t), 30*time.Second)
	require.NoError(t, err)
	p.Pause()
	p.CutAll()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err = s.KeepAlive(ctx, 30*time.Second)
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, dcs.ErrUnavailable)
	p.Resume()
}

// --- watch ----------------------------------------------------------------------

// nextEvent returns the next event or fails after a while.
func nextEvent(t *testing.T, ch <-chan dcs.Event) dcs.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		require.True(t, ok, "watch closed")
		return ev
	case <-time.After(15 * time.Second):
		require.FailNow(t, "no event")
		return dcs.Event{}
	}
}

func configN(t *testing.T, v []byte) int {
	t.Helper()
	m, err := dcs.DecodeConfig(v)
	require.NoError(t, err)
	var n int
	_, err = fmt.Sscan(fmt.Sprint(m["n"]), &n)
	require.NoError(t, err)
	return n
}

// TestWatchAcrossRepeatedCuts cuts the watcher's connections every 50 ms
// while another node writes: every change arrives once, in order. (Cuts every
// few milliseconds starve the client entirely, since a connection never lives
// long enough to resume the watch; it recovers within ~100 ms after they stop.)
func TestWatchAcrossRepeatedCuts(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	w, p := h.newStore(t, "w", nil)
	a, _ := h.newStore(t, "a", nil)
	ctx := testCtx(t)
	ch, err := w.Watch(ctx)
	require.NoError(t, err)

	const n = 200
	stop := make(chan struct{})
	var cutter sync.WaitGroup
	cutter.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				p.CutAll()
			}
		}
	})
	var writeErr error
	var writer sync.WaitGroup
	writer.Go(func() {
		for i := range n {
			if _, err := a.SetConfig(ctx, map[string]any{"n": i}, dcs.Unconditional); err != nil {
				writeErr = err
				return
			}
		}
	})
	var last int64
	for i := range n {
		ev := nextEvent(t, ch)
		require.Equal(t, dcs.EventPut, ev.Type, "event %d", i)
		require.Equal(t, i, configN(t, ev.Value), "change skipped or repeated")
		require.Greater(t, ev.Revision, last)
		last = ev.Revision
	}
	close(stop)
	cutter.Wait()
	writer.Wait()
	require.NoError(t, writeErr)
}

// TestWatchResetAfterCompaction: a watch that must resume past a compacted
// revision gets one EventReset with the current state, then changes again.
func TestWatchResetAfterCompaction(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	w, p := h.newStore(t, "w", nil)
	ctx := testCtx(t)
	ch, err := w.Watch(ctx)
	require.NoError(t, err)
	h.WriteRaw(t, dcs.KeyConfig, []byte(`{"n":0}`))
	require.Equal(t, 0, configN(t, nextEvent(t, ch).Value))

	p.Pause()
	p.CutAll()
	var rev int64
	for i := 1; i <= 5; i++ {
		resp, err := admin.Put(ctx, h.path.Key(dcs.KeyConfig), fmt.Sprintf(`{"n":%d}`, i))
		require.NoError(t, err)
		rev = resp.Header.Revision
	}
	_, err = admin.Compact(ctx, rev)
	require.NoError(t, err)
	p.Resume()

	ev := nextEvent(t, ch)
	require.Equal(t, dcs.EventReset, ev.Type)
	require.NotNil(t, ev.Cluster)
	require.GreaterOrEqual(t, ev.Cluster.Revision, rev)
	require.Equal(t, "5", fmt.Sprint(ev.Cluster.Config.Data["n"]))

	h.WriteRaw(t, dcs.KeyConfig, []byte(`{"n":6}`))
	ev = nextEvent(t, ch)
	require.Equal(t, dcs.EventPut, ev.Type)
	require.Equal(t, 6, configN(t, ev.Value))
}

// TestSlowWatcherGetsReset: a reader that does not keep up gets one
// EventReset instead of an unbounded backlog, and the store is not blocked.
func TestSlowWatcherGetsReset(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	w, _ := h.newStore(t, "w", nil)
	a, _ := h.newStore(t, "a", nil)
	ctx := testCtx(t)
	ch, err := w.Watch(ctx)
	require.NoError(t, err)
	const n = 1100 // more than the queue holds
	for i := range n {
		_, err := a.SetConfig(ctx, map[string]any{"n": i}, dcs.Unconditional)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		c, err := w.Cluster(ctx)
		return err == nil && c.Config != nil && fmt.Sprint(c.Config.Data["n"]) == fmt.Sprint(n-1)
	}, 10*time.Second, 10*time.Millisecond, "the watch loop was not blocked by the slow reader")
	got, resets := 0, 0
	for {
		ev := nextEvent(t, ch)
		got++
		if ev.Type == dcs.EventReset {
			resets++
			require.NotNil(t, ev.Cluster.Config)
		}
		if ev.Cluster.Config != nil && fmt.Sprint(ev.Cluster.Config.Data["n"]) == fmt.Sprint(n-1) {
			break
		}
	}
	require.Equal(t, 1, resets)
	require.Less(t, got, n)
}

// TestWatchStartsAfterOthersWrites: Watch waits until the cache has caught
// up with etcd, so a change another node committed before the call is in
// the starting state, not delivered as an event.
func TestWatchStartsAfterOthersWrites(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	w, _ := h.newStore(t, "w", nil)
	ctx := testCtx(t)
	_, err := w.Cluster(ctx)
	require.NoError(t, err)
	for i := range 3 {
		h.WriteRaw(t, dcs.KeyConfig, fmt.Appendf(nil, `{"n":%d}`, i))
	}
	// Writes outside the prefix move etcd's revision past the prefix's last
	// change; the barrier must still complete promptly.
	_, err = admin.Put(ctx, "/elsewhere/"+h.path.Scope, "x")
	require.NoError(t, err)
	start := time.Now()
	ch, err := w.Watch(ctx)
	require.NoError(t, err)
	require.Less(t, time.Since(start), time.Second)
	c, err := w.Cluster(ctx)
	require.NoError(t, err)
	require.Equal(t, "2", fmt.Sprint(c.Config.Data["n"]))
	h.WriteRaw(t, dcs.KeyConfig, []byte(`{"n":3}`))
	require.Equal(t, 3, configN(t, nextEvent(t, ch).Value), "the first event is the first change after Watch")
}

// TestWatchClosedOnStoreClose: Close ends every watch, even one whose reader
// is not reading.
func TestWatchClosedOnStoreClose(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	w, _ := h.newStore(t, "w", nil)
	ctx := testCtx(t)
	ch1, err := w.Watch(ctx)
	require.NoError(t, err)
	ch2, err := w.Watch(ctx)
	require.NoError(t, err)
	h.WriteRaw(t, dcs.KeyConfig, []byte(`{}`))
	require.Eventually(t, func() bool {
		c, _ := w.Cluster(ctx)
		return c != nil && c.Config != nil
	}, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, w.Close())
	for _, ch := range []<-chan dcs.Event{ch1, ch2} {
		for range ch { // drain whatever was queued; the channel must close
		}
	}
}

// TestGarbageValuesNeverFail: arbitrary bytes in every key decode to errors
// in the snapshot, never to a failed Cluster or a panic.
func TestGarbageValuesNeverFail(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	s, _ := h.newStore(t, "a", nil)
	keys := []string{dcs.KeyLeader, dcs.KeyConfig, dcs.KeyInitialize, dcs.KeyFailover, dcs.KeySync, dcs.KeyHistory,
		dcs.KeyStatus, dcs.KeyOptimeLeader, dcs.KeyFailsafe, dcs.KeyMembers + "x", dcs.KeyMembers + "x/y", "unknown/key"}
	values := [][]byte{nil, []byte("\x00"), []byte("null"), []byte("[]"), []byte(`{"a":`), []byte(strings.Repeat("[", 10000)), []byte(`1e400`)}
	ctx := testCtx(t)
	for _, v := range values {
		for _, k := range keys {
			h.WriteRaw(t, k, v)
		}
		var c *dcs.Cluster
		last, _ := h.ReadRaw(t, keys[len(keys)-1])
		require.Eventually(t, func() bool {
			var err error
			c, err = s.Cluster(ctx)
			return err == nil && c.Revision >= last.ModRevision
		}, 10*time.Second, 5*time.Millisecond)
		for _, err := range c.DecodeErrors {
			require.True(t, errors.Is(err, dcs.ErrInvalidValue), "%v", err)
		}
	}
}
