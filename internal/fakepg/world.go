package fakepg

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pgha/pgha/pg"
)

// Op names an operation of an Instance, for FailNext, DelayNext, Calls and
// the event log.
type Op string

// Operations. Every method of the ha.Postgres interface that can fail is
// one; OpCrash, OpRemoveDataDir and the streaming ones only name events.
const (
	OpInitdb           Op = "initdb"
	OpEnsureRoles      Op = "ensure_roles"
	OpStart            Op = "start"
	OpStop             Op = "stop"
	OpPromote          Op = "promote"
	OpCheckpoint       Op = "checkpoint"
	OpConfigurePrimary Op = "configure_primary"
	OpConfigureStandby Op = "configure_standby"
	OpClone            Op = "clone"
	OpRewind           Op = "rewind"
	OpCrashRecovery    Op = "crash_recovery"
	OpStatus           Op = "status"
	OpTimelineHistory  Op = "timeline_history"
	OpReload           Op = "reload"

	OpCrash           Op = "crash"           // Crash: the postmaster died
	OpRemoveDataDir   Op = "remove_data_dir" // Config.DataDir vanished
	OpPauseStreaming  Op = "pause_streaming"
	OpResumeStreaming Op = "resume_streaming"
)

const (
	firstSystemID       = uint64(7_400_000_000_000_000_001)
	firstLSN            = pg.LSN(0x1000028)
	checkpointRecord    = pg.LSN(0x78) // a shutdown or online checkpoint record
	endOfRecoveryRecord = pg.LSN(0x28) // the end-of-recovery record of a promotion
)

// ErrReadOnly is returned by Instance.Write on an instance that is not a
// running primary.
var ErrReadOnly = errors.New("fakepg: cannot execute write in a read-only transaction")

// World is a set of fake instances that know each other by host:port, so
// that a replica streams from the instance its upstream names. It also keeps
// the ordered log of state changes. Safe for concurrent use.
type World struct {
	mu          sync.Mutex
	byAddr      map[string]*Instance
	all         []*Instance
	nextSysID   uint64
	nextPID     int
	events      []Event
	maxWritable int
}

// NewWorld returns an empty World.
func NewWorld() *World {
	return &World{byAddr: map[string]*Instance{}, nextSysID: firstSystemID, nextPID: 1000}
}

// Config describes one fake instance.
type Config struct {
	// Name is the member name (required); Config().Name reports it.
	Name string
	// Host and Port are where others reach the instance (its ConnURL and the
	// key replicas find it by). Default Name and 5432.
	Host string
	Port int
	// DataDir, when set, is a directory where the instance mirrors
	// PG_VERSION, standby.signal and backup_label, and whose removal empties
	// the instance. Empty: the instance touches no file.
	DataDir string
	// Version is the major version reported by Version(). Default 15.
	Version int
	// NoRewind models a data directory with neither data checksums nor
	// wal_log_hints: Rewind fails with pg.ErrRewindNotPossible.
	NoRewind bool
}

// Addr returns host:port.
func (c Config) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// NewInstance adds an instance with an empty data directory, stopped.
func (w *World) NewInstance(cfg Config) (*Instance, error) {
	if cfg.Name == "" {
		return nil, errors.New("fakepg: Config.Name is required")
	}
	if cfg.Host == "" {
		cfg.Host = cfg.Name
	}
	if cfg.Port == 0 {
		cfg.Port = pg.DefaultPort
	}
	if cfg.Version == 0 {
		cfg.Version = 15
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, dup := w.byAddr[cfg.Addr()]; dup {
		return nil, fmt.Errorf("fakepg: an instance already listens on %s", cfg.Addr())
	}
	for _, o := range w.all {
		if o.cfg.Name == cfg.Name {
			return nil, fmt.Errorf("fakepg: an instance is already named %q", cfg.Name)
		}
	}
	i := &Instance{
		w:      w,
		cfg:    cfg,
		exits:  make(chan pg.ExitEvent, 16),
		calls:  map[Op]int{},
		fails:  map[Op][]error{},
		delays: map[Op][]time.Duration{},
	}
	w.byAddr[cfg.Addr()] = i
	w.all = append(w.all, i)
	return i, nil
}

// Instance returns the instance named name, or nil.
func (w *World) Instance(name string) *Instance {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, i := range w.all {
		if i.cfg.Name == name {
			return i
		}
	}
	return nil
}

// Writable returns the names of the instances that accept writes now (running
// primaries), sorted.
func (w *World) Writable() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writableLocked()
}

func (w *World) writableLocked() []string {
	var out []string
	for _, i := range w.all {
		if i.writableLocked() {
			out = append(out, i.cfg.Name)
		}
	}
	slices.Sort(out)
	return out
}

// MaxWritable returns the largest number of instances that were writable at
// the same time since the World was created.
func (w *World) MaxWritable() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.maxWritable
}

// Events returns a copy of the log of state changes, oldest first.
func (w *World) Events() []Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.events)
}

// Event is one state change of an instance.
type Event struct {
	// Seq numbers events from 1 in the order they happened.
	Seq int
	// At is when it happened (time.Now: virtual inside a synctest bubble).
	At time.Time
	// Instance is the member name.
	Instance string
	// Op is what happened.
	Op Op
	// Detail adds the mode, timeline or upstream ("immediate", "timeline 2").
	Detail string
	// Writable lists the instances writable right after the event, sorted.
	Writable []string
}

// String renders the event on one line, e.g. "#7 node1 stop immediate
// writable=[]".
func (e Event) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d %s %s", e.Seq, e.Instance, e.Op)
	if e.Detail != "" {
		b.WriteString(" " + e.Detail)
	}
	fmt.Fprintf(&b, " writable=%v", e.Writable)
	return b.String()
}

func (w *World) recordLocked(i *Instance, op Op, detail string) {
	wr := w.writableLocked()
	w.maxWritable = max(w.maxWritable, len(wr))
	w.events = append(w.events, Event{Seq: len(w.events) + 1, At: time.Now(), Instance: i.cfg.Name, Op: op, Detail: detail, Writable: wr})
}

// upstreamLocked returns the instance up names, or nil.
func (w *World) upstreamLocked(up pg.Upstream) *Instance {
	if up.Host == "" {
		return nil
	}
	port := up.Port
	if port == 0 {
		port = pg.DefaultPort
	}
	return w.byAddr[net.JoinHostPort(up.Host, strconv.Itoa(port))]
}

// propagateLocked lets every streaming replica catch up with its upstream,
// until nothing changes (cascades take several passes).
func (w *World) propagateLocked() {
	for range len(w.all) + 1 {
		changed := false
		for _, r := range w.all {
			u := r.streamingFromLocked()
			if u == nil || r.paused {
				continue
			}
			d, ud := r.data, u.data
			if d.tl == ud.tl && d.lsn >= ud.lsn {
				continue
			}
			d.tl, d.hist = ud.tl, slices.Clone(ud.hist)
			d.lsn = max(d.lsn, ud.lsn)
			changed = true
		}
		if !changed {
			return
		}
	}
}

// compatible reports whether a replica with data r can stream from an
// upstream with data u: same system, and r's history is u's up to r's end of
// WAL.
func compatible(r, u *dataDir) bool {
	if r.sysid != u.sysid || r.tl > u.tl {
		return false
	}
	if len(u.hist) < len(r.hist) || !slices.Equal(r.hist, u.hist[:len(r.hist)]) {
		return false
	}
	if r.tl == u.tl {
		return len(r.hist) == len(u.hist)
	}
	sw := u.hist[len(r.hist)]
	return sw.Timeline == r.tl && r.lsn <= sw.LSN
}
