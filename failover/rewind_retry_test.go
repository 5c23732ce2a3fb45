package failover_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/pgha/pgha/failover"
)

// A rewind that failed before pg_rewind ran (Result.Retry) is tried again;
// one that failed in pg_rewind is not (without remove_data_* the member
// stays stopped for an operator).
func TestRewindRetriedWhenItDidNotStart(t *testing.T) {
	base := func(res failover.Result) failover.Input {
		c := cluster()
		setLeader(c, "node2", 70)
		l := stopped("node1")
		l.CanRewind = true
		l.ControlState = failover.ControlShutDown
		l.Memory.Rewind = failover.RewindNeeded
		l.Result = &res
		return input(c, l)
	}
	d := failover.Decide(base(failover.Result{Action: failover.ActionRewind, Err: "pg: rewind: the server is still running", Retry: true}))
	assert.Equal(t, failover.ActionRewind, d.Action, d.String())
	assert.Equal(t, failover.RewindNeeded, d.Memory.Rewind)

	d = failover.Decide(base(failover.Result{Action: failover.ActionRewind, Err: "pg_rewind: could not find common ancestor"}))
	assert.NotEqual(t, failover.ActionRewind, d.Action, d.String())
	assert.Equal(t, failover.RewindFailed, d.Memory.Rewind)
}
