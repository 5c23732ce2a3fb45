package memdcs

import (
	"context"
	"strings"

	"github.com/pgha/pgha/dcs"
)

// maxQueue bounds a watcher's backlog; past it the backlog is replaced by one
// EventReset.
const maxQueue = 1024

type change struct {
	typ   dcs.EventType
	key   string
	value []byte
}

type watcher struct {
	client *Store
	prefix string
	queue  []dcs.Event
	signal chan struct{}
	out    chan dcs.Event
}

func (w *watcher) wake() {
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

// record notes a change of the current transaction; notifyLocked hands the
// transaction's changes to the watchers.
func (s *Server) record(typ dcs.EventType, key string, value []byte) {
	s.pending = append(s.pending, change{typ: typ, key: key, value: value})
}

func (s *Server) notifyLocked() {
	if len(s.pending) == 0 {
		return
	}
	changes := s.pending
	s.pending = nil
	snaps := map[string]*dcs.Cluster{}
	for w := range s.watchers {
		var snap *dcs.Cluster
		for _, c := range changes {
			rel, ok := strings.CutPrefix(c.key, w.prefix)
			if !ok {
				continue
			}
			if snap == nil {
				if snap = snaps[w.prefix]; snap == nil {
					snap = s.snapshotLocked(w.client.path)
					snaps[w.prefix] = snap
				}
			}
			if len(w.queue) >= maxQueue {
				w.queue = []dcs.Event{{Type: dcs.EventReset, Revision: s.rev, Cluster: snap}}
				continue
			}
			w.queue = append(w.queue, dcs.Event{Type: c.typ, Key: rel, Value: c.value, Revision: s.rev, Cluster: snap})
		}
		if snap != nil {
			w.wake()
		}
	}
}

// Watch implements dcs.Reader.
func (c *Store) Watch(ctx context.Context) (<-chan dcs.Event, error) {
	if _, err := c.srv.admit(ctx, c.name); err != nil {
		return nil, err
	}
	s := c.srv
	s.mu.Lock()
	if c.isClosed() {
		s.mu.Unlock()
		return nil, dcs.ErrClosed
	}
	w := &watcher{client: c, prefix: c.path.Prefix(), signal: make(chan struct{}, 1), out: make(chan dcs.Event)}
	s.watchers[w] = struct{}{}
	c.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer c.wg.Done()
		defer close(w.out)
		defer func() {
			s.mu.Lock()
			delete(s.watchers, w)
			s.mu.Unlock()
		}()
		for {
			s.mu.Lock()
			var ev dcs.Event
			have := false
			if !s.faultsLocked(c.name).partitioned && len(w.queue) > 0 {
				ev, have = w.queue[0], true
				w.queue[0] = dcs.Event{}
				w.queue = w.queue[1:]
			}
			s.mu.Unlock()
			if !have {
				select {
				case <-w.signal:
					continue
				case <-ctx.Done():
					return
				case <-c.done:
					return
				}
			}
			select {
			case w.out <- ev:
			case <-ctx.Done():
				return
			case <-c.done:
				return
			}
		}
	}()
	return w.out, nil
}
