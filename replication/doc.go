// Package replication holds pgha's replication logic that is not the HA
// decision itself: observing streaming replication, managing replication
// slots, and planning synchronous replication.
//
// # Monitor
//
// [Observe] reads, over a superuser connection (any [pg.Queryer]: a
// *pgx.Conn, a pool, or [pg.Instance.WithConn]), what a server knows about
// replication: its WAL position; on a primary (or a cascading replica) each
// standby of pg_stat_replication with its state, sync_state, sent / write /
// flush / replay positions, their distance in bytes from the server's
// position and PostgreSQL's measured time lags; on a replica its WAL
// receiver (pg_stat_wal_receiver), received and replayed positions, and how
// far replay is behind in bytes and time. The ha package publishes the same
// positions where Patroni does: xlog_location, receive_lsn, replay_lsn and
// replication_state in the member key, and the "xlog" and "replication"
// fields of GET /patroni.
//
// # Replication slots
//
// Slots keep WAL on a server until the standby that needs it has received
// it, so a replica that was down catches up by streaming instead of being
// re-cloned. pgha manages physical slots as Patroni does (SPEC 8.2), in two
// pure steps and one that touches the server:
//
//   - [DesiredSlots] computes the slots a node should have from the DCS
//     snapshot, its role and tags and the dynamic configuration: a slot per
//     member (on PostgreSQL 11+ with member_slots_ttl > 0 on every node that
//     can become primary, so the new primary already holds WAL for the
//     others after a failover), the slots of absent members the leader
//     retains for member_slots_ttl (/status.retain_slots), and the permanent
//     physical slots of /config "slots". Slot names come from member names
//     with [pg.SlotName].
//   - [PlanSlots] compares them with pg_replication_slots ([pg.ListSlots]):
//     creates the missing ones, drops the ones of members that are gone
//     (unless paused or matched by ignore_slots), drops lost slots so they
//     are recreated, and advances slots no standby uses here to the position
//     the leader published in /status.slots, so they do not hold WAL
//     forever.
//   - The leader publishes /status.slots ([PublishedSlots]) and
//     retain_slots ([Retention]).
//
// The ha package runs these every loop cycle, warns and exports a metric
// when a slot holds more WAL than a threshold (the disk-full risk of a slot
// whose standby never comes back), and points replicas at their slot
// (primary_slot_name) when use_slots is on.
//
// Not supported yet: permanent logical slots (type logical, with database
// and plugin) are reported as a configuration problem and not created, and
// logical slots are not copied to replicas; standby clusters.
//
// # Synchronous replication
//
// [NextSyncStep] plans, one step at a time, the changes to
// synchronous_standby_names and the /sync key that keep every acknowledged
// commit on a standby the cluster may promote (SPEC 8.3); [ParseNames]
// reads synchronous_standby_names.
package replication
