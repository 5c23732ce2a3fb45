package replication

import (
	"context"
	"time"

	"github.com/pgha/pgha/pg"
)

// Standby is one WAL sender of a server (a row of pg_stat_replication)
// with its lag behind the server's position.
type Standby struct {
	// Name is the standby's application_name: its member name when it is
	// a pgha or Patroni member.
	Name       string
	PID        int
	Usename    string
	ClientAddr string
	// State is "startup", "catchup", "streaming", "backup" or "stopping".
	State string
	// SyncState is "async", "potential", "sync" or "quorum";
	// SyncPriority its priority in synchronous_standby_names.
	SyncState    string
	SyncPriority int
	// SlotName is the replication slot the standby streams through ("" for
	// none).
	SlotName string
	// SentLSN, WriteLSN, FlushLSN and ReplayLSN are the standby's positions
	// as last reported (0 when not yet known).
	SentLSN, WriteLSN, FlushLSN, ReplayLSN pg.LSN
	// SentLag, WriteLag, FlushLag and ReplayLag are the byte distances from
	// the server's position (Snapshot.Position) to each of the above; -1
	// when the position is not known.
	SentLag, WriteLag, FlushLag, ReplayLag int64
	// WriteDelay, FlushDelay and ReplayDelay are PostgreSQL's measured time
	// lags (pg_stat_replication's *_lag); 0 when it has no current sample,
	// which is what it reports for an idle standby that caught up.
	WriteDelay, FlushDelay, ReplayDelay time.Duration
	// ReplyTime is when the standby last reported (nil: never).
	ReplyTime *time.Time
}

// Receiver is a replica's WAL receiver (pg_stat_wal_receiver).
type Receiver struct {
	// Status is "streaming", "starting", "waiting", "stopping",
	// "restarting" or "stopped".
	Status string
	// SenderHost and SenderPort are the upstream; SlotName the slot on it
	// ("" for none).
	SenderHost string
	SenderPort int
	SlotName   string
	// Timeline is the timeline of the WAL being received.
	Timeline int
	// WrittenLSN and FlushedLSN: how far received WAL is written and
	// flushed.
	WrittenLSN, FlushedLSN pg.LSN
	// UpstreamLSN is the upstream's last reported position
	// (latest_end_lsn) and UpstreamTime when it was reported.
	UpstreamLSN  pg.LSN
	UpstreamTime *time.Time
	// LastMessage is when the last message from the upstream arrived.
	LastMessage *time.Time
}

// Snapshot is what a server knows about replication at one instant: its
// own position and, on a primary (or a cascading replica), its standbys;
// on a replica, its WAL receiver and replay.
type Snapshot struct {
	// InRecovery is true on a replica.
	InRecovery bool
	// Taken is the server's clock when the snapshot was taken.
	Taken time.Time
	// CurrentLSN and FlushLSN are a primary's write and flush positions.
	CurrentLSN, FlushLSN pg.LSN
	// ReceiveLSN and ReplayLSN are a replica's received (and flushed) and
	// replayed positions.
	ReceiveLSN, ReplayLSN pg.LSN
	// ReplayTimestamp is the commit time of the last transaction a replica
	// replayed (nil: none yet); ReplayPaused whether replay is paused.
	ReplayTimestamp *time.Time
	ReplayPaused    bool
	// Receiver is the replica's WAL receiver, nil when it has none.
	Receiver *Receiver
	// Standbys are the server's WAL senders, by name.
	Standbys []Standby
}

// Position is the server's own WAL position: a primary's current write
// position, a replica's received (or, if more, replayed) position. The
// standbys' lags are measured from it.
func (s Snapshot) Position() pg.LSN {
	if !s.InRecovery {
		return s.CurrentLSN
	}
	return max(s.ReceiveLSN, s.ReplayLSN)
}

// ReplayLag is how many bytes a replica received but has not replayed yet
// (0 on a primary).
func (s Snapshot) ReplayLag() int64 {
	if !s.InRecovery {
		return 0
	}
	return max(int64(s.ReceiveLSN-s.ReplayLSN), 0)
}

// UpstreamLag is how many bytes a replica is behind what its upstream last
// reported having (latest_end_lsn); -1 when it has no WAL receiver or the
// upstream reported nothing yet. Compare it with the leader's optime in the
// DCS for the cluster-wide view.
func (s Snapshot) UpstreamLag() int64 {
	if !s.InRecovery || s.Receiver == nil || s.Receiver.UpstreamLSN == 0 {
		return -1
	}
	return max(int64(s.Receiver.UpstreamLSN-s.ReplayLSN), 0)
}

// ReplayDelay is how far behind in time a replica's replay is: the time
// since the last replayed commit when there is WAL still to replay, 0 when
// it replayed everything it received (an idle primary writes no commits,
// so the age of the last one says nothing then), -1 when unknown.
func (s Snapshot) ReplayDelay() time.Duration {
	if !s.InRecovery {
		return 0
	}
	if s.ReceiveLSN <= s.ReplayLSN {
		return 0
	}
	if s.ReplayTimestamp == nil {
		return -1
	}
	return max(s.Taken.Sub(*s.ReplayTimestamp), 0)
}

// Standby returns the standby with the given application_name.
func (s Snapshot) Standby(name string) (Standby, bool) {
	for _, st := range s.Standbys {
		if st.Name == name {
			return st, true
		}
	}
	return Standby{}, false
}

// Observe reads the replication state of the server q is connected to (a
// superuser connection: other roles see the LSN columns as NULL): its WAL
// positions, pg_stat_replication with each standby's positions and lags,
// and on a replica pg_stat_wal_receiver. Three queries; the positions are
// read first so that no standby appears ahead of the server.
func Observe(ctx context.Context, q pg.Queryer) (Snapshot, error) {
	pos, err := pg.GetPositions(ctx, q)
	if err != nil {
		return Snapshot{}, err
	}
	s := Snapshot{
		InRecovery: pos.InRecovery, Taken: pos.Now,
		CurrentLSN: pos.CurrentLSN, FlushLSN: pos.FlushLSN,
		ReceiveLSN: pos.ReceiveLSN, ReplayLSN: pos.ReplayLSN,
		ReplayTimestamp: pos.ReplayTimestamp, ReplayPaused: pos.ReplayPaused,
	}
	senders, err := pg.ListWALSenders(ctx, q)
	if err != nil {
		return s, err
	}
	if s.InRecovery {
		w, err := pg.GetWALReceiver(ctx, q)
		if err != nil {
			return s, err
		}
		if w != nil {
			s.Receiver = &Receiver{
				Status: w.Status, SenderHost: w.SenderHost, SenderPort: w.SenderPort, SlotName: w.SlotName,
				Timeline: w.ReceivedTimeline, WrittenLSN: w.WrittenLSN, FlushedLSN: w.FlushedLSN,
				UpstreamLSN: w.LatestEndLSN, UpstreamTime: w.LatestEndTime, LastMessage: w.LastMsgReceiptTime,
			}
			s.ReceiveLSN = max(s.ReceiveLSN, w.FlushedLSN)
		}
	}
	s.Standbys = standbys(senders, s.Position())
	return s, nil
}

// standbys turns WAL sender rows into Standbys with their lags behind pos.
func standbys(rows []pg.WALSenderStat, pos pg.LSN) []Standby {
	out := make([]Standby, 0, len(rows))
	lag := func(l pg.LSN) int64 {
		if l == 0 || pos == 0 {
			return -1
		}
		return max(int64(pos-l), 0)
	}
	dur := func(d *time.Duration) time.Duration {
		if d == nil {
			return 0
		}
		return *d
	}
	for _, w := range rows {
		out = append(out, Standby{
			Name: w.ApplicationName, PID: w.PID, Usename: w.Usename, ClientAddr: w.ClientAddr,
			State: w.State, SyncState: w.SyncState, SyncPriority: w.SyncPriority, SlotName: w.SlotName,
			SentLSN: w.SentLSN, WriteLSN: w.WriteLSN, FlushLSN: w.FlushLSN, ReplayLSN: w.ReplayLSN,
			SentLag: lag(w.SentLSN), WriteLag: lag(w.WriteLSN), FlushLag: lag(w.FlushLSN), ReplayLag: lag(w.ReplayLSN),
			WriteDelay: dur(w.WriteLag), FlushDelay: dur(w.FlushLag), ReplayDelay: dur(w.ReplayLag),
			ReplyTime: w.ReplyTime,
		})
	}
	return out
}
