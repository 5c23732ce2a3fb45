package fakepg_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pgha/pgha/ha"
	"github.com/pgha/pgha/internal/fakepg"
	"github.com/pgha/pgha/pg"
)

// The fake implements what the HA node drives. The check lives here so that
// fakepg does not import ha (and ha's internal tests may use fakepg).
var _ ha.Postgres = (*fakepg.Instance)(nil)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var ctx = context.Background()

func up(name string) pg.Upstream { return pg.Upstream{Host: name, Port: 5432} }

func newInst(t *testing.T, w *fakepg.World, name string) *fakepg.Instance {
	t.Helper()
	i, err := w.NewInstance(fakepg.Config{Name: name})
	require.NoError(t, err)
	return i
}

// cluster builds a running primary p and replicas streaming from it.
func cluster(t *testing.T, names ...string) (*fakepg.World, []*fakepg.Instance) {
	t.Helper()
	w := fakepg.NewWorld()
	var out []*fakepg.Instance
	for k, n := range names {
		i := newInst(t, w, n)
		if k == 0 {
			require.NoError(t, i.Initdb(ctx, pg.InitdbOptions{}))
		} else {
			require.NoError(t, i.Clone(ctx, up(names[0]), nil))
		}
		require.NoError(t, i.Start(ctx))
		out = append(out, i)
	}
	return w, out
}

func TestNewInstanceValidates(t *testing.T) {
	w := fakepg.NewWorld()
	_, err := w.NewInstance(fakepg.Config{})
	require.Error(t, err)
	a := newInst(t, w, "a")
	_, err = w.NewInstance(fakepg.Config{Name: "b", Host: "a"})
	require.ErrorContains(t, err, "already listens on a:5432")
	_, err = w.NewInstance(fakepg.Config{Name: "a", Port: 5433})
	require.ErrorContains(t, err, "already named")
	require.Same(t, a, w.Instance("a"))
	require.Nil(t, w.Instance("zz"))

	cfg := a.Config()
	require.Equal(t, "a", cfg.Name)
	require.Equal(t, "a:5432", cfg.ConnectAddress)
	require.Equal(t, "postgres://a:5432/postgres", a.ConnURL())
	require.Equal(t, 15, a.Version())
}

func TestLifecycleAndStatus(t *testing.T) {
	w := fakepg.NewWorld()
	p := newInst(t, w, "p")

	require.False(t, p.Initialized())
	st, err := p.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, pg.Status{}, st, "empty data directory: nothing to report")
	require.ErrorIs(t, p.Start(ctx), pg.ErrNotInitialized)
	require.ErrorIs(t, p.Promote(ctx), pg.ErrNotRunning)
	require.ErrorIs(t, p.Checkpoint(ctx), pg.ErrNotRunning)
	require.ErrorIs(t, p.ConfigureStandby(ctx, pg.Upstream{}), pg.ErrNotInitialized)

	require.NoError(t, p.Initdb(ctx, pg.InitdbOptions{}))
	require.ErrorIs(t, p.Initdb(ctx, pg.InitdbOptions{}), pg.ErrDataDirNotEmpty)
	require.True(t, p.Initialized())
	st, err = p.Status(ctx)
	require.NoError(t, err)
	require.False(t, st.Running)
	require.NotNil(t, st.Control)
	require.Equal(t, pg.StateShutDown, st.Control.State)
	require.True(t, st.Control.CleanShutdown())
	require.True(t, st.Control.RewindPossible())
	require.Equal(t, 1, st.Control.Timeline)
	require.GreaterOrEqual(t, len(st.Control.Fields["Database system identifier"]), 10)
	require.ErrorIs(t, p.EnsureRoles(ctx), pg.ErrNotRunning)
	require.ErrorIs(t, p.Reload(ctx), pg.ErrNotRunning)

	require.NoError(t, p.Start(ctx))
	require.ErrorIs(t, p.Start(ctx), pg.ErrAlreadyRunning)
	require.NoError(t, p.EnsureRoles(ctx))
	require.NoError(t, p.Reload(ctx))
	require.Equal(t, 2, p.Calls(fakepg.OpReload))
	pid, running := p.Running()
	require.True(t, running)
	require.NotZero(t, pid)
	st, err = p.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, pg.RolePrimary, st.Role)
	require.Equal(t, 1, st.Timeline)
	require.Equal(t, st.Control, (*pg.ControlData)(nil))
	require.Equal(t, st.FlushLSN, st.CurrentLSN)
	require.True(t, p.Writable())

	lsn, err := p.Write(1000)
	require.NoError(t, err)
	require.Equal(t, st.FlushLSN+1000, lsn)

	require.ErrorIs(t, p.Initdb(ctx, pg.InitdbOptions{}), pg.ErrAlreadyRunning)
	require.NoError(t, p.Stop(ctx, pg.StopFast))
	require.NoError(t, p.Stop(ctx, pg.StopFast), "stopping a stopped instance is fine")
	_, running = p.Running()
	require.False(t, running)
	_, err = p.Write(1)
	require.ErrorIs(t, err, fakepg.ErrReadOnly)
	st, err = p.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, pg.StateShutDown, st.Control.State)
	require.Equal(t, lsn, st.Control.CheckpointLSN, "the shutdown checkpoint is at the end of WAL")
}

func TestReplicaStreamsAndCascades(t *testing.T) {
	w, in := cluster(t, "p", "r1", "r2")
	p, r1, r2 := in[0], in[1], in[2]
	require.Equal(t, []string{"p"}, w.Writable())

	// r2 cascades from r1.
	require.NoError(t, r2.ConfigureStandby(ctx, up("r1")))
	lsn, err := p.Write(4096)
	require.NoError(t, err)
	for _, r := range []*fakepg.Instance{r1, r2} {
		st, err := r.Status(ctx)
		require.NoError(t, err)
		require.Equal(t, pg.RoleReplica, st.Role)
		require.Equal(t, lsn, st.ReceiveLSN)
		require.Equal(t, lsn, st.ReplayLSN)
		require.NotNil(t, st.WALReceiver)
		require.Equal(t, "streaming", st.WALReceiver.Status)
		require.False(t, r.Writable())
		_, err = r.Write(1)
		require.ErrorIs(t, err, fakepg.ErrReadOnly)
	}
	st, _ := r2.Status(ctx)
	require.Equal(t, "r1", st.WALReceiver.SenderHost)
	require.Equal(t, 5432, st.WALReceiver.SenderPort)
	require.Equal(t, "r1:5432", r2.Info().Upstream)

	// A paused replica lags, and catches up on resume.
	r1.PauseStreaming()
	lsn2, _ := p.Write(100)
	require.Equal(t, lsn, r1.Info().LSN)
	require.Equal(t, lsn, r2.Info().LSN, "r2 follows r1, which is held back")
	r1.ResumeStreaming()
	require.Equal(t, lsn2, r1.Info().LSN)
	require.Equal(t, lsn2, r2.Info().LSN)

	// No upstream: running read-only, no WAL receiver.
	require.NoError(t, r2.ConfigureStandby(ctx, pg.Upstream{}))
	st, _ = r2.Status(ctx)
	require.Nil(t, st.WALReceiver)
	require.Equal(t, "", r2.Info().Upstream)
	require.Equal(t, 1, w.MaxWritable())
}

func TestStopModesAndControlState(t *testing.T) {
	_, in := cluster(t, "p", "r")
	p, r := in[0], in[1]
	before := p.Info().LSN

	// A fast stop of the primary: the replica receives the shutdown
	// checkpoint, past the checkpoint's location (a switchover waits on
	// exactly that).
	require.NoError(t, p.Stop(ctx, pg.StopFast))
	pi := p.Info()
	require.Equal(t, pg.StateShutDown, pi.ControlState)
	require.Equal(t, before, pi.Checkpoint)
	require.Greater(t, pi.LSN, before)
	require.Equal(t, pi.LSN, r.Info().LSN)
	st, _ := r.Status(ctx)
	require.Nil(t, st.WALReceiver, "upstream down")

	require.NoError(t, r.Stop(ctx, pg.StopSmart))
	require.Equal(t, pg.StateShutDownInRecovery, r.Info().ControlState)
	require.NoError(t, r.Start(ctx))
	require.NoError(t, r.Stop(ctx, pg.StopImmediate))
	require.Equal(t, pg.StateInArchiveRecovery, r.Info().ControlState)
	require.NoError(t, p.Start(ctx))
	require.NoError(t, p.Stop(ctx, pg.StopImmediate))
	require.Equal(t, pg.StateInProduction, p.Info().ControlState)

	// Crash recovery: a primary's is done, a replica's refused.
	require.NoError(t, p.CrashRecovery(ctx))
	require.Equal(t, pg.StateShutDown, p.Info().ControlState)
	require.NoError(t, p.CrashRecovery(ctx), "clean: nothing to do")
	var de *pg.DirError
	require.ErrorAs(t, r.CrashRecovery(ctx), &de)
	require.Equal(t, 2, p.Calls(fakepg.OpCrashRecovery))
	require.Equal(t, 1, r.Calls(fakepg.OpCrashRecovery))
}

func TestCrashReportsExit(t *testing.T) {
	w, in := cluster(t, "p")
	p := in[0]
	pid, _ := p.Running()
	p.Crash()
	p.Crash() // not running: nothing
	select {
	case ev := <-p.Exits():
		require.Equal(t, pid, ev.PID)
		require.True(t, ev.StatusKnown)
		require.NotZero(t, ev.Signal)
	default:
		t.Fatal("no exit event")
	}
	select {
	case ev := <-p.Exits():
		t.Fatalf("second event %v", ev)
	default:
	}
	require.Equal(t, pg.StateInProduction, p.Info().ControlState)
	require.Empty(t, w.Writable())
	evs := w.Events()
	require.Equal(t, fakepg.OpCrash, evs[len(evs)-1].Op)
	// A requested stop reports nothing.
	require.NoError(t, p.Start(ctx))
	require.NoError(t, p.Stop(ctx, pg.StopImmediate))
	select {
	case ev := <-p.Exits():
		t.Fatalf("event for a requested stop: %v", ev)
	default:
	}
}

func TestPromoteTimelineHistory(t *testing.T) {
	w, in := cluster(t, "p", "r1", "r2")
	p, r1, r2 := in[0], in[1], in[2]
	lsn, _ := p.Write(500)
	p.Crash()
	require.NoError(t, r2.ConfigureStandby(ctx, up("r1")))

	require.NoError(t, r1.Promote(ctx))
	require.NoError(t, r1.Promote(ctx), "promoting a primary is a no-op")
	i1 := r1.Info()
	require.True(t, i1.Primary)
	require.Equal(t, 2, i1.Timeline)
	require.False(t, i1.Standby)
	require.Equal(t, []pg.TimelineSwitch{{Timeline: 1, LSN: lsn, Reason: "no recovery target specified"}}, i1.History)
	require.Greater(t, i1.LSN, lsn)
	// The cascade follows to timeline 2.
	i2 := r2.Info()
	require.Equal(t, 2, i2.Timeline)
	require.Equal(t, i1.LSN, i2.LSN)
	require.True(t, i2.Streaming)

	h, err := r1.TimelineHistory(ctx, 2)
	require.NoError(t, err)
	require.Equal(t, i1.History, h)
	h, err = r1.TimelineHistory(ctx, 1)
	require.NoError(t, err)
	require.Nil(t, h)
	_, err = r1.TimelineHistory(ctx, 3)
	require.Error(t, err)
	_, err = p.TimelineHistory(ctx, 2)
	require.ErrorIs(t, err, pg.ErrNotRunning)

	require.Equal(t, []string{"r1"}, w.Writable())
	require.Equal(t, 1, w.MaxWritable())
}

// The old primary wrote WAL the new one never got: it cannot stream until
// rewound, and pg_rewind brings it onto the new timeline.
func TestDivergenceAndRewind(t *testing.T) {
	w, in := cluster(t, "p", "r")
	p, r := in[0], in[1]
	r.PauseStreaming()
	lost, _ := p.Write(8192) // r never receives this
	p.Crash()
	require.NoError(t, r.Promote(ctx))
	require.Less(t, r.Info().History[0].LSN, lost)

	// The old primary restarted as a replica of the new one: no streaming.
	require.NoError(t, p.ConfigureStandby(ctx, up("r")))
	require.NoError(t, p.Start(ctx))
	st, _ := p.Status(ctx)
	require.Nil(t, st.WALReceiver, "diverged: the WAL receiver cannot start")
	require.Equal(t, 1, st.Timeline)
	require.False(t, p.Writable())

	_, err := p.Rewind(ctx, up("r"))
	require.ErrorIs(t, err, pg.ErrAlreadyRunning)
	require.NoError(t, p.Stop(ctx, pg.StopFast))
	rewound, err := p.Rewind(ctx, up("r"))
	require.NoError(t, err)
	require.True(t, rewound)
	pi := p.Info()
	require.Equal(t, 2, pi.Timeline)
	require.True(t, pi.BackupLabel)
	require.NoError(t, p.Start(ctx))
	require.True(t, p.Info().Streaming)
	require.False(t, p.Info().BackupLabel)
	lsn, _ := r.Write(10)
	require.Equal(t, lsn, p.Info().LSN)

	// A second rewind has nothing to do.
	require.NoError(t, p.Stop(ctx, pg.StopFast))
	rewound, err = p.Rewind(ctx, up("r"))
	require.NoError(t, err)
	require.False(t, rewound)
	require.Equal(t, 1, w.MaxWritable())
}

// A replica that only lags is no divergence: after the promotion of another
// replica it follows the new timeline at once.
func TestLaggingReplicaFollowsNewTimeline(t *testing.T) {
	_, in := cluster(t, "p", "a", "b")
	p, a, b := in[0], in[1], in[2]
	b.PauseStreaming()
	_, _ = p.Write(100)
	p.Crash()
	require.NoError(t, a.Promote(ctx))
	require.NoError(t, b.ConfigureStandby(ctx, up("a")))
	b.ResumeStreaming()
	bi := b.Info()
	require.True(t, bi.Streaming)
	require.Equal(t, 2, bi.Timeline)
	require.Equal(t, a.Info().LSN, bi.LSN)
}

func TestRewindFailures(t *testing.T) {
	w := fakepg.NewWorld()
	p := newInst(t, w, "p")
	q, err := w.NewInstance(fakepg.Config{Name: "q", NoRewind: true})
	require.NoError(t, err)
	other := newInst(t, w, "o")
	require.NoError(t, p.Initdb(ctx, pg.InitdbOptions{}))
	require.NoError(t, other.Initdb(ctx, pg.InitdbOptions{}))
	require.NoError(t, p.Start(ctx))
	require.NoError(t, q.Clone(ctx, up("p"), nil))

	_, err = q.Rewind(ctx, up("p"))
	require.ErrorIs(t, err, pg.ErrRewindNotPossible)
	_, err = other.Rewind(ctx, up("p"))
	require.ErrorContains(t, err, "different systems")
	_, err = other.Rewind(ctx, up("nobody"))
	require.ErrorContains(t, err, "could not connect")
	_, err = newInst(t, w, "e").Rewind(ctx, up("p"))
	require.ErrorIs(t, err, pg.ErrNotInitialized)
}

func TestClone(t *testing.T) {
	w, in := cluster(t, "p")
	p := in[0]
	r := newInst(t, w, "r")
	require.ErrorContains(t, r.Clone(ctx, up("nobody"), nil), "could not connect")
	var prog []pg.CloneProgress
	require.NoError(t, r.Clone(ctx, up("p"), func(cp pg.CloneProgress) { prog = append(prog, cp) }))
	require.Len(t, prog, 1)
	require.Equal(t, 100, prog[0].Percent)
	require.ErrorIs(t, r.Clone(ctx, up("p"), nil), pg.ErrDataDirNotEmpty)
	ri, pi := r.Info(), p.Info()
	require.Equal(t, pi.SystemID, ri.SystemID)
	require.Equal(t, pi.LSN, ri.LSN)
	require.True(t, ri.Standby)
	require.True(t, ri.BackupLabel)
	require.Equal(t, "p:5432", ri.Upstream)
	st, _ := r.Status(ctx)
	require.Equal(t, pg.StateInProduction, st.Control.State, "a copy of a running primary's pg_control")
	require.NoError(t, r.Start(ctx))
	require.True(t, r.Info().Streaming)

	// A clone from a replica (clonefrom).
	c := newInst(t, w, "c")
	require.NoError(t, c.Clone(ctx, up("r"), nil))
	st, _ = c.Status(ctx)
	require.Equal(t, pg.StateInArchiveRecovery, st.Control.State)
}

func TestConfigurePrimaryAndRestart(t *testing.T) {
	_, in := cluster(t, "p", "r")
	p, r := in[0], in[1]
	// A running primary told to become a standby stays primary until restarted.
	require.NoError(t, p.ConfigureStandby(ctx, up("r")))
	require.True(t, p.Writable())
	require.NoError(t, p.Stop(ctx, pg.StopFast))
	require.NoError(t, r.Promote(ctx))
	require.NoError(t, p.Start(ctx))
	require.False(t, p.Writable())
	require.True(t, p.Info().Streaming, "a clean switchover needs no rewind")

	require.NoError(t, p.Stop(ctx, pg.StopFast))
	require.NoError(t, p.ConfigurePrimary(ctx))
	require.False(t, p.Info().Standby)
}

func TestFailNext(t *testing.T) {
	_, in := cluster(t, "p", "r")
	r := in[1]
	boom := errors.New("boom")
	r.FailNext(fakepg.OpPromote, boom)
	r.FailNext(fakepg.OpPromote, boom)
	require.ErrorIs(t, r.Promote(ctx), boom)
	require.ErrorIs(t, r.Promote(ctx), boom)
	require.False(t, r.Writable())
	require.NoError(t, r.Promote(ctx))
	require.Equal(t, 3, r.Calls(fakepg.OpPromote))

	r.FailNext(fakepg.OpStart, boom)
	require.NoError(t, r.Stop(ctx, pg.StopFast))
	require.ErrorIs(t, r.Start(ctx), boom)
	_, running := r.Running()
	require.False(t, running, "a failed start leaves no postmaster")
	require.NoError(t, r.Start(ctx))

	r.FailNext(fakepg.OpStatus, boom)
	st, err := r.Status(ctx)
	require.ErrorIs(t, err, boom)
	require.True(t, st.Running, "the postmaster runs; the query failed")
	require.Empty(t, st.Role)
}

func TestDelayNextHonoursContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, in := cluster(t, "p", "r")
		p, r := in[0], in[1]

		r.DelayNext(fakepg.OpPromote, time.Minute)
		start := time.Now()
		require.NoError(t, r.Promote(ctx))
		require.Equal(t, time.Minute, time.Since(start))

		p.DelayNext(fakepg.OpCheckpoint, time.Hour)
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		err := p.Checkpoint(cctx)
		require.ErrorIs(t, err, pg.ErrTimeout)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, time.Minute+time.Second, time.Since(start))

		// A slow shutdown refuses writes at once; if it outlives the
		// caller's context, it goes on and ends later.
		r.DelayNext(fakepg.OpStop, time.Hour)
		sctx, cancel2 := context.WithTimeout(ctx, time.Second)
		defer cancel2()
		require.ErrorIs(t, r.Stop(sctx, pg.StopFast), pg.ErrTimeout)
		require.False(t, r.Writable())
		_, running := r.Running()
		require.True(t, running)
		st, err := r.Status(ctx)
		require.ErrorContains(t, err, "shutting down")
		require.True(t, st.Running)
		time.Sleep(time.Hour)
		_, running = r.Running()
		require.False(t, running)
		require.Equal(t, pg.StateShutDown, r.Info().ControlState)

		// A second fast stop waits for the first; an immediate one ends it.
		require.NoError(t, r.Start(ctx))
		r.DelayNext(fakepg.OpStop, time.Hour)
		t1 := time.Now()
		go func() { _ = r.Stop(ctx, pg.StopFast) }()
		synctest.Wait()
		require.NoError(t, r.Stop(ctx, pg.StopFast))
		require.Equal(t, time.Hour, time.Since(t1))
		require.NoError(t, r.Start(ctx))
		r.DelayNext(fakepg.OpStop, time.Hour)
		go func() { _ = r.Stop(ctx, pg.StopFast) }()
		synctest.Wait()
		require.NoError(t, r.Stop(ctx, pg.StopImmediate))
		_, running = r.Running()
		require.False(t, running)
		require.Equal(t, pg.StateInProduction, r.Info().ControlState)

		// A stop whose signal fails does nothing.
		require.NoError(t, r.Start(ctx))
		r.FailNext(fakepg.OpStop, errors.New("kill: operation not permitted"))
		require.Error(t, r.Stop(ctx, pg.StopFast))
		require.True(t, r.Writable())
	})
}

// During a delayed start the postmaster runs but refuses connections; a stop
// then aborts the start (as a fence must be able to).
func TestDelayedStartAbortedByStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := fakepg.NewWorld()
		p := newInst(t, w, "p")
		require.NoError(t, p.Initdb(ctx, pg.InitdbOptions{}))
		p.DelayNext(fakepg.OpStart, 10*time.Second)
		done := make(chan error, 1)
		go func() { done <- p.Start(ctx) }()
		synctest.Wait()
		_, running := p.Running()
		require.True(t, running)
		st, err := p.Status(ctx)
		require.Error(t, err)
		require.True(t, st.Running)
		require.Empty(t, st.Role)
		require.False(t, p.Writable())

		require.NoError(t, p.Stop(ctx, pg.StopImmediate))
		err = <-done
		require.ErrorContains(t, err, "exited during start")
		require.False(t, p.Writable())
		require.Equal(t, pg.StateShutDown, p.Info().ControlState, "an aborted start leaves pg_control alone")
		require.Equal(t, 0, w.MaxWritable())

		// Undisturbed, a delayed start completes after the delay.
		p.DelayNext(fakepg.OpStart, 10*time.Second)
		t0 := time.Now()
		require.NoError(t, p.Start(ctx))
		require.Equal(t, 10*time.Second, time.Since(t0))
		require.True(t, p.Writable())

		// A context ending during the delay gives up the start.
		require.NoError(t, p.Stop(ctx, pg.StopFast))
		p.DelayNext(fakepg.OpStart, 10*time.Second)
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		require.ErrorIs(t, p.Start(sctx), pg.ErrTimeout)
		_, running = p.Running()
		require.False(t, running)
	})
}

func TestDelayedPromoteInterruptedByStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, in := cluster(t, "p", "r")
		in[0].Crash()
		r := in[1]
		r.DelayNext(fakepg.OpPromote, time.Second)
		done := make(chan error, 1)
		go func() { done <- r.Promote(ctx) }()
		synctest.Wait()
		require.NoError(t, r.Stop(ctx, pg.StopImmediate))
		require.ErrorContains(t, <-done, "exited during promotion")
		require.Equal(t, 1, r.Info().Timeline)
		require.Equal(t, 1, w.MaxWritable())
	})
}

func TestEventsAndWritability(t *testing.T) {
	w, in := cluster(t, "p", "r")
	p, r := in[0], in[1]
	require.NoError(t, p.Stop(ctx, pg.StopImmediate))
	require.NoError(t, r.Promote(ctx))
	var got []string
	for _, e := range w.Events() {
		got = append(got, e.String())
	}
	require.Equal(t, []string{
		"#1 p initdb system 7400000000000000001 writable=[]",
		"#2 p start primary writable=[p]",
		"#3 r clone upstream p:5432 writable=[p]",
		"#4 r start replica writable=[p]",
		"#5 p stop immediate writable=[]",
		"#6 r promote timeline 2 writable=[r]",
	}, got)
	require.Equal(t, 1, w.MaxWritable())

	// Two primaries at once are recorded, never hidden.
	require.NoError(t, p.ConfigurePrimary(ctx))
	require.NoError(t, p.Start(ctx))
	require.Equal(t, []string{"p", "r"}, w.Writable())
	require.Equal(t, 2, w.MaxWritable())
}

func TestDataDirMirror(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	w, in := cluster(t, "p")
	r, err := w.NewInstance(fakepg.Config{Name: "r", DataDir: dir})
	require.NoError(t, err)
	require.Equal(t, dir, r.Config().DataDir)
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(dir, name))
		return err == nil
	}
	require.False(t, exists("PG_VERSION"))
	require.NoError(t, r.Clone(ctx, up("p"), nil))
	require.True(t, exists("PG_VERSION"))
	require.True(t, exists("standby.signal"))
	require.True(t, exists("backup_label"))
	require.NoError(t, r.Start(ctx))
	require.False(t, exists("backup_label"))
	require.NoError(t, r.Promote(ctx))
	require.False(t, exists("standby.signal"))
	require.NoError(t, r.ConfigureStandby(ctx, up("p")))
	require.True(t, exists("standby.signal"))

	// Removing the directory of a stopped instance empties it (ha's
	// reinitialize does this before cloning again).
	require.NoError(t, r.Stop(ctx, pg.StopFast))
	require.NoError(t, os.RemoveAll(dir))
	require.False(t, r.Initialized())
	require.NoError(t, r.Clone(ctx, up("p"), nil))
	require.Equal(t, in[0].Info().SystemID, r.Info().SystemID)
}
