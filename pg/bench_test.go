package pg_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/pg"
)

// BenchmarkLifecycle measures the operations the HA loop's speed depends
// on, against real PostgreSQL: start, stop fast, stop immediate, promote,
// and clone of an empty cluster. Each reports its median as ms/median
// (run with -benchtime=20x for a stable median), beside the mean ns/op.
//
//	go test -run XXX -bench . -benchtime=20x ./pg/
func BenchmarkLifecycle(b *testing.B) {
	ctx := context.Background()
	// Benchmark logs are always printed, so keep them quiet; and measure
	// with fsync on, as in production (the tests turn it off).
	quiet := func(cfg pg.Config) pg.Config {
		cfg.Logger = hclog.NewNullLogger()
		delete(cfg.Parameters, "fsync")
		return cfg
	}
	primary := pgtest.Init(b, quiet(pgtest.Config(b, "bench-primary")))
	mustB(b, execBench(ctx, primary, "CREATE TABLE t (id int)"))

	// measure runs setup (untimed) and op (timed) b.N times and reports the
	// median of op.
	// The caller stops the timer first thing, so its preparation is not
	// counted either.
	measure := func(b *testing.B, setup, op, teardown func(b *testing.B)) {
		var d []time.Duration
		for range b.N {
			if setup != nil {
				setup(b)
			}
			b.StartTimer()
			t0 := time.Now()
			op(b)
			d = append(d, time.Since(t0))
			b.StopTimer()
			if teardown != nil {
				teardown(b)
			}
		}
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, "ms/median")
		b.ReportMetric(float64(d[0].Microseconds())/1000, "ms/min")
		b.ReportMetric(float64(d[len(d)-1].Microseconds())/1000, "ms/max")
	}

	start := func(inst *pg.Instance) func(b *testing.B) {
		return func(b *testing.B) { mustB(b, inst.Start(ctx)) }
	}
	stop := func(inst *pg.Instance, mode pg.StopMode) func(b *testing.B) {
		return func(b *testing.B) { mustB(b, inst.Stop(ctx, mode)) }
	}

	b.Run("start", func(b *testing.B) {
		b.StopTimer()
		mustB(b, primary.Stop(ctx, pg.StopFast))
		measure(b, nil, start(primary), stop(primary, pg.StopFast))
		mustB(b, primary.Start(ctx))
	})
	b.Run("stop_fast", func(b *testing.B) {
		b.StopTimer()
		mustB(b, primary.Stop(ctx, pg.StopFast))
		measure(b, start(primary), stop(primary, pg.StopFast), nil)
		mustB(b, primary.Start(ctx))
	})
	b.Run("stop_immediate", func(b *testing.B) {
		b.StopTimer()
		mustB(b, primary.Stop(ctx, pg.StopFast))
		measure(b, start(primary), stop(primary, pg.StopImmediate), nil)
		mustB(b, primary.Start(ctx))
	})

	replica := pgtest.New(b, quiet(pgtest.Config(b, "bench-replica")))
	dataDir := replica.Config().DataDir
	wipe := func(b *testing.B) {
		mustB(b, replica.Stop(ctx, pg.StopImmediate))
		entries, err := os.ReadDir(dataDir)
		mustB(b, err)
		for _, e := range entries {
			mustB(b, os.RemoveAll(filepath.Join(dataDir, e.Name())))
		}
	}
	up := pgtest.Upstream(primary, "")
	clone := func(b *testing.B) { mustB(b, replica.Clone(ctx, up, nil)) }

	b.Run("clone_empty", func(b *testing.B) {
		b.StopTimer()
		measure(b, nil, clone, wipe)
	})
	b.Run("promote", func(b *testing.B) {
		b.StopTimer()
		measure(b, func(b *testing.B) {
			clone(b)
			mustB(b, replica.Start(ctx))
		}, func(b *testing.B) { mustB(b, replica.Promote(ctx)) }, wipe)
	})
}

func execBench(ctx context.Context, inst *pg.Instance, q string) error {
	conn, err := inst.Connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, q)
	return err
}

func mustB(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}
