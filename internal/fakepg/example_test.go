package fakepg_test

import (
	"context"
	"fmt"

	"github.com/pgha/pgha/internal/fakepg"
	"github.com/pgha/pgha/pg"
)

// A primary and a replica: WAL written on the primary reaches the replica,
// the primary crashes, the replica is promoted, and the event log shows that
// there never were two writable instances.
func Example() {
	ctx := context.Background()
	w := fakepg.NewWorld()
	p, _ := w.NewInstance(fakepg.Config{Name: "node1"}) // node1:5432
	r, _ := w.NewInstance(fakepg.Config{Name: "node2"})
	_ = p.Initdb(ctx, pg.InitdbOptions{})
	_ = p.Start(ctx)
	_ = r.Clone(ctx, pg.Upstream{Host: "node1", Port: 5432}, nil)
	_ = r.Start(ctx)

	lsn, _ := p.Write(1 << 20)
	fmt.Println("replica has the write:", r.Info().LSN == lsn)

	p.Crash()
	ev := <-p.Exits()
	fmt.Println("exit reported:", ev.Signal)
	r.FailNext(fakepg.OpPromote, fmt.Errorf("pg_promote failed"))
	fmt.Println("promote:", r.Promote(ctx))
	fmt.Println("promote:", r.Promote(ctx))
	st, _ := r.Status(ctx)
	fmt.Println("node2:", st.Role, "timeline", st.Timeline)

	for _, e := range w.Events() {
		fmt.Println(e)
	}
	fmt.Println("most writable at once:", w.MaxWritable())
	// Output:
	// replica has the write: true
	// exit reported: killed
	// promote: pg_promote failed
	// promote: <nil>
	// node2: primary timeline 2
	// #1 node1 initdb system 7400000000000000001 writable=[]
	// #2 node1 start primary writable=[node1]
	// #3 node2 clone upstream node1:5432 writable=[node1]
	// #4 node2 start replica writable=[node1]
	// #5 node1 crash writable=[]
	// #6 node2 promote timeline 2 writable=[node2]
	// most writable at once: 1
}
