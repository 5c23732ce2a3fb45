package faultsuite

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// wlSoakFaults are the faults R1 draws from, each healed before the next.
var wlSoakFaults = []struct {
	id    string
	fault func(*testing.T, *wlScenario) wlFault
}{
	{"B4", wlFaultB4},
	{"B5", wlFaultB5},
	{"B6", wlFaultB6},
	{"C3", wlFaultC3},
	{"C4", wlFaultC4},
	{"D1", wlFaultD1},
	{"F1", wlFaultF1},
}

// TestWorkloadSoak is R1: a seeded random soak in sync mode. For the
// duration given by -faultsuite.soak it draws one fault at a time from
// B4, B5, B6, C3, C4, D1 and F1 (each healed before the next, with a
// seeded pause of 1-4 s of plain load between faults), with the history
// workload running throughout; at the end it requires no acknowledged write
// lost, no two writers, no unexpected value and convergence with no stuck
// state. The seed (-faultsuite.seed, default the clock) is logged first and
// is in every failure message; the same seed replays the same sequence of
// faults (which node each hits follows from the cluster's state).
// Values seen and gone are reported, not failed on: B5 and C3 leave an old
// primary whose locally committed, never acknowledged rows its readers can
// see (G5 class).
func TestWorkloadSoak(t *testing.T) {
	wlSkipShort(t)
	if *wlSoak <= 0 {
		t.Skip("random soak R1: run with -faultsuite.soak=90s (and -faultsuite.seed=N to replay)")
	}
	seed := *wlSeed
	if seed == 0 {
		seed = time.Now().UnixNano() % 1_000_000_000
	}
	t.Logf("R1 soak: seed %d, duration %s (replay: go test ./internal/faultsuite -run TestWorkloadSoak -faultsuite.soak=%s -faultsuite.seed=%d)",
		seed, *wlSoak, *wlSoak, seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("R1 soak FAILED with seed %d: replay with -faultsuite.soak=%s -faultsuite.seed=%d", seed, *wlSoak, seed)
		}
	})
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	e := wlNewEnv(t, "sync")
	s := e.begin(t, fmt.Sprintf("R1 seed=%d", seed))
	deadline := time.Now().Add(*wlSoak)
	var steps []string
	for i := 1; time.Now().Before(deadline); i++ {
		f := wlSoakFaults[rng.IntN(len(wlSoakFaults))]
		pause := time.Duration(1000+rng.IntN(3000)) * time.Millisecond
		start := s.h.Since()
		r := f.fault(t, s)
		if t.Failed() {
			return
		}
		steps = append(steps, f.id)
		t.Logf("R1 seed=%d step %d at %s: %s: %s (took %s)", seed, i, start.Round(time.Millisecond), f.id, r.Desc, (s.h.Since() - start).Round(time.Millisecond))
		time.Sleep(pause)
	}
	o := s.finish(wlExpect{NoLoss: true, TwoWriters: 0})
	t.Logf("R1 sync seed=%d: injected %d faults in %s (%s), each healed before the next; verified: no acknowledged write lost, no two writers, no unexpected values, "+
		"no stuck state after the final heal, %s",
		seed, len(steps), *wlSoak, strings.Join(steps, " "), o.summary())
}
