package routing

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pgha/pgha/dcs"
)

// ErrStaleView is wrapped by primary acquisitions that fail closed because
// the router could not confirm, within Config.MaxStaleness, that the
// primary it follows still holds the leader key (the DCS cannot be
// reached, or a leader change has not reached the router yet).
var ErrStaleView = errors.New("routing: the primary is not confirmed by the DCS within MaxStaleness")

// confirmation is the last time the DCS confirmed a tenure current.
type confirmation struct {
	leader   string
	revision int64 // the leader key's create revision
	at       time.Time
}

// minConfirmInterval bounds how often the DCS is asked.
const minConfirmInterval = 10 * time.Millisecond

// confirmer returns the reader to confirm views with, or nil when the
// staleness bound is off.
func (c Config) confirmer() dcs.Confirmer {
	if c.MaxStaleness <= 0 {
		return nil
	}
	s, ok := c.Source.(*dcsSource)
	if !ok || s == nil {
		return nil
	}
	cf, _ := s.r.(dcs.Confirmer)
	return cf
}

// validateStaleness checks MaxStaleness against the source.
func (c Config) validateStaleness() error {
	switch {
	case c.MaxStaleness < 0:
		return errors.New("MaxStaleness must not be negative")
	case c.MaxStaleness == 0:
		return nil
	}
	s, ok := c.Source.(*dcsSource)
	if !ok {
		return errors.New("MaxStaleness needs FromDCS (FromHosts has no leader key to confirm)")
	}
	if s != nil && s.r != nil {
		if _, ok := s.r.(dcs.Confirmer); !ok {
			return fmt.Errorf("MaxStaleness needs a reader that implements dcs.Confirmer (etcddcs.Store, memdcs.Store); %T does not", s.r)
		}
	}
	return nil
}

// confirmLoop asks the DCS every MaxStaleness/4 whether the leader it
// holds now is the tenure the router follows. Each success that matches
// records the instant the request started: the view was current then.
func (r *Router) confirmLoop(cf dcs.Confirmer, reader dcs.Reader) {
	defer r.loops.Done()
	every := max(r.cfg.MaxStaleness/4, minConfirmInterval)
	failing := false
	for {
		start := r.clk.Now()
		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.MaxStaleness)
		err := r.confirmOnce(ctx, cf, reader, start)
		cancel()
		if r.ctx.Err() != nil {
			return
		}
		switch {
		case err != nil && !failing:
			failing = true
			r.log.Warn("cannot confirm the topology with the DCS; writes stop after MaxStaleness", "error", err, "max_staleness", r.cfg.MaxStaleness)
		case err == nil && failing:
			failing = false
			r.log.Info("topology confirmed by the DCS again")
		}
		t := r.clk.NewTimer(every)
		select {
		case <-r.ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

func (r *Router) confirmOnce(ctx context.Context, cf dcs.Confirmer, reader dcs.Reader, start time.Time) error {
	if _, err := cf.Confirm(ctx); err != nil {
		return err
	}
	c, err := reader.Cluster(ctx)
	if err != nil {
		return err
	}
	v := ViewFromCluster(c)
	r.conf.Store(&confirmation{leader: v.Leader, revision: v.LeaderRevision, at: start})
	return nil
}

// staleErr returns nil when the staleness bound is off, or when the DCS
// confirmed the tenure st follows less than MaxStaleness ago; else an error
// wrapping ErrStaleView.
func (r *Router) staleErr(st *state) error {
	if r.cfg.MaxStaleness <= 0 || st.topo == nil {
		return nil
	}
	c := r.conf.Load()
	e := st.topo.Epoch
	switch {
	case c == nil:
		return fmt.Errorf("%w: never confirmed", ErrStaleView)
	case c.leader != e.Leader || c.revision != e.Revision:
		return fmt.Errorf("%w: the DCS last confirmed leader %q (revision %d), the router follows %q (revision %d)",
			ErrStaleView, c.leader, c.revision, e.Leader, e.Revision)
	}
	if age := r.clk.Since(c.at); age > r.cfg.MaxStaleness {
		return fmt.Errorf("%w: last confirmed %s ago", ErrStaleView, age.Round(time.Millisecond))
	}
	return nil
}
