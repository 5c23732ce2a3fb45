package etcddcs

import (
	"context"
	"errors"
	"time"
)

// minHedgeDelay is the shortest wait before a renewal is sent again.
const minHedgeDelay = 50 * time.Millisecond

// hedge runs call, an idempotent request, within timeout, and sends it
// again, up to n attempts in all, while no attempt has answered: after
// timeout/(n+1), or at once when an attempt fails with a transient error.
// It returns the first success, or the first non-transient error, or the
// last error once every attempt failed or timeout passed. The attempts it
// started have all returned when it returns.
//
// Why: clientv3 balances requests round-robin over its connections and
// keeps a connection to a member that stopped answering (a paused or hung
// etcd process: TCP still up) until gRPC's keepalive drops it, 10 s and more
// later; a request that lands there waits out its whole timeout while every
// other member would answer in milliseconds. The next attempt is given to
// the next connection, so one hung member costs a renewal one delay, not its
// timeout (RELIABILITY.md C5).
func hedge[T any](ctx context.Context, timeout time.Duration, n int, call func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	n = max(n, 1)
	delay := max(timeout/time.Duration(n+1), minHedgeDelay)
	type result struct {
		v   T
		err error
	}
	results := make(chan result, n)
	launched, returned := 0, 0
	launch := func() {
		launched++
		go func() {
			v, err := call(ctx)
			results <- result{v, err}
		}()
	}
	// drain waits for the attempts still running (ctx is cancelled first).
	drain := func() {
		cancel()
		for ; returned < launched; returned++ {
			<-results
		}
	}
	launch()
	timer := time.NewTimer(delay)
	defer timer.Stop()
	var last error
	for {
		select {
		case r := <-results:
			returned++
			if r.err == nil {
				drain()
				return r.v, nil
			}
			last = r.err
			if !isUnavailable(r.err) || ctx.Err() != nil {
				if isUnavailable(r.err) && returned < launched {
					continue // a later attempt may still answer in time
				}
				drain()
				return r.v, r.err
			}
			if launched < n {
				launch()
				timer.Reset(delay)
			} else if returned == launched {
				var zero T
				return zero, last
			}
		case <-timer.C:
			if launched < n {
				launch()
				timer.Reset(delay)
			}
		case <-ctx.Done():
			drain()
			var zero T
			if last == nil || errors.Is(ctx.Err(), context.Canceled) {
				last = ctx.Err()
			}
			return zero, last
		}
	}
}

// attempts is how many times a hedged request may be sent: once per
// endpoint.
func (s *Store) attempts() int { return len(s.cli.Endpoints()) }

// saw records a revision etcd answered with.
func (s *Store) saw(rev int64) {
	for {
		cur := s.seenRev.Load()
		if rev <= cur || s.seenRev.CompareAndSwap(cur, rev) {
			return
		}
	}
}
