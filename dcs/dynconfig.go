package dcs

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Dynamic configuration limits. Patroni raises ttl below 20 s to 20 s; pgha
// accepts down to MinTTL because its leader fence is timer-driven and does not
// wait for loop_wait (DESIGN.md, "Configuration and defaults").
const (
	MinTTL          = 3 * time.Second
	MinLoopWait     = 1 * time.Second
	MinRetryTimeout = 1 * time.Second
)

// Synchronous replication modes of DynamicConfig.SynchronousMode.
const (
	SyncOff    = "off"
	SyncOn     = "on"
	SyncQuorum = "quorum"
)

// DynamicConfig is the typed view of /config with Patroni's defaults
// (SPEC.md 2.1). Values that do not parse fall back to the default and are
// listed in Warnings; nothing here fails.
type DynamicConfig struct {
	TTL                   time.Duration // default 30s, min MinTTL
	LoopWait              time.Duration // default 10s
	RetryTimeout          time.Duration // default 10s
	MaximumLagOnFailover  int64         // bytes, default 1048576
	MaximumLagOnSyncNode  int64         // bytes, default -1 (disabled)
	PrimaryStartTimeout   time.Duration // default 300s
	PrimaryStopTimeout    time.Duration // default 0 (disabled)
	PrimaryRaceBackoff    time.Duration // default 0
	SynchronousMode       string        // SyncOff, SyncOn or SyncQuorum
	SynchronousModeStrict bool
	SynchronousNodeCount  int // default 1; at least 1 when strict
	FailsafeMode          bool
	CheckTimeline         bool
	MaxTimelinesHistory   int           // 0 = keep all
	MemberSlotsTTL        time.Duration // default 30 min
	Pause                 bool
	UsePgRewind           bool           // postgresql.use_pg_rewind, default false
	UseSlots              bool           // postgresql.use_slots, default true
	Parameters            map[string]any // postgresql.parameters as stored
	Slots                 map[string]any // permanent slots (slots / permanent_slots / permanent_replication_slots)
	IgnoreSlots           []any
	StandbyCluster        map[string]any // nil unless host, port or restore_command is set
	// Warnings lists every value that was replaced by a default or adjusted.
	Warnings []string
}

// ParseDynamicConfig applies Patroni's parse rules and defaults to a /config
// object (nil is the empty object), then the timing rule
// loop_wait + 2*retry_timeout <= ttl.
func ParseDynamicConfig(data map[string]any) DynamicConfig {
	d := DynamicConfig{
		TTL: 30 * time.Second, LoopWait: 10 * time.Second, RetryTimeout: 10 * time.Second,
		MaximumLagOnFailover: 1 << 20, MaximumLagOnSyncNode: -1,
		PrimaryStartTimeout: 300 * time.Second, SynchronousMode: SyncOff, SynchronousNodeCount: 1,
		MemberSlotsTTL: 30 * time.Minute, UseSlots: true,
	}
	warn := func(k string, v any) {
		d.Warnings = append(d.Warnings, fmt.Sprintf("%s: invalid value %v, using the default", k, v))
	}
	seconds := func(k string, dst *time.Duration, min time.Duration) {
		v, ok := data[k]
		if !ok || v == nil {
			return
		}
		n, ok := parseWithUnit(v, time.Second)
		if !ok || time.Duration(n)*time.Second < min {
			warn(k, v)
			return
		}
		*dst = time.Duration(n) * time.Second
	}
	integer := func(k string, dst *int64, min int64) {
		v, ok := data[k]
		if !ok || v == nil {
			return
		}
		n, ok := parseInt(v)
		if !ok || n < min {
			warn(k, v)
			return
		}
		*dst = n
	}
	boolean := func(m map[string]any, k string, dst *bool) {
		v, ok := m[k]
		if !ok || v == nil {
			return
		}
		b, ok := parseBool(v)
		if !ok {
			warn(k, v)
			return
		}
		*dst = b
	}

	if v, ok := data["ttl"]; ok && v != nil {
		if n, ok := parseWithUnit(v, time.Second); !ok {
			warn("ttl", v)
		} else if time.Duration(n)*time.Second < MinTTL {
			d.Warnings = append(d.Warnings, fmt.Sprintf("ttl: %ds is below the minimum, using %s", n, MinTTL))
			d.TTL = MinTTL
		} else {
			d.TTL = time.Duration(n) * time.Second
		}
	}
	seconds("loop_wait", &d.LoopWait, MinLoopWait)
	seconds("retry_timeout", &d.RetryTimeout, MinRetryTimeout)
	integer("maximum_lag_on_failover", &d.MaximumLagOnFailover, 0)
	integer("maximum_lag_on_syncnode", &d.MaximumLagOnSyncNode, -1)
	if _, ok := data["primary_start_timeout"]; ok {
		seconds("primary_start_timeout", &d.PrimaryStartTimeout, 0)
	} else {
		seconds("master_start_timeout", &d.PrimaryStartTimeout, 0)
	}
	if _, ok := data["primary_stop_timeout"]; ok {
		seconds("primary_stop_timeout", &d.PrimaryStopTimeout, 0)
	} else {
		seconds("master_stop_timeout", &d.PrimaryStopTimeout, 0)
	}
	seconds("primary_race_backoff", &d.PrimaryRaceBackoff, 0)
	if v, ok := data["synchronous_mode"]; ok && v != nil {
		if s, isStr := v.(string); isStr && strings.EqualFold(strings.TrimSpace(s), SyncQuorum) {
			d.SynchronousMode = SyncQuorum
		} else if b, ok := parseBool(v); ok {
			if b {
				d.SynchronousMode = SyncOn
			}
		} else {
			warn("synchronous_mode", v)
		}
	}
	boolean(data, "synchronous_mode_strict", &d.SynchronousModeStrict)
	var snc int64 = 1
	integer("synchronous_node_count", &snc, 1)
	d.SynchronousNodeCount = int(snc)
	boolean(data, "failsafe_mode", &d.FailsafeMode)
	boolean(data, "check_timeline", &d.CheckTimeline)
	var mth int64
	integer("max_timelines_history", &mth, 0)
	d.MaxTimelinesHistory = int(mth)
	seconds("member_slots_ttl", &d.MemberSlotsTTL, 0)
	boolean(data, "pause", &d.Pause)
	if pgv, ok := data["postgresql"]; ok && pgv != nil {
		if pgm, ok := pgv.(map[string]any); ok {
			boolean(pgm, "use_pg_rewind", &d.UsePgRewind)
			boolean(pgm, "use_slots", &d.UseSlots)
			if p, ok := pgm["parameters"].(map[string]any); ok {
				d.Parameters = p
			}
		} else {
			warn("postgresql", pgv)
		}
	}
	for _, k := range []string{"slots", "permanent_slots", "permanent_replication_slots"} {
		if m, ok := data[k].(map[string]any); ok {
			d.Slots = m
			break
		}
	}
	if a, ok := data["ignore_slots"].([]any); ok {
		d.IgnoreSlots = a
	}
	if sc, ok := data["standby_cluster"].(map[string]any); ok {
		if truthy(sc["host"]) || truthy(sc["port"]) || truthy(sc["restore_command"]) {
			d.StandbyCluster = sc
		}
	}
	d.applyTimingRule()
	return d
}

// applyTimingRule enforces loop_wait + 2*retry_timeout <= ttl the way Patroni
// does: shrink retry_timeout and loop_wait rather than reject.
func (d *DynamicConfig) applyTimingRule() {
	if d.LoopWait+2*d.RetryTimeout <= d.TTL {
		return
	}
	before := fmt.Sprintf("ttl=%s loop_wait=%s retry_timeout=%s", d.TTL, d.LoopWait, d.RetryTimeout)
	ttlS := int64(d.TTL / time.Second)
	if time.Second+2*d.RetryTimeout > d.TTL {
		d.LoopWait = time.Second
		d.RetryTimeout = time.Duration((ttlS-1)/2) * time.Second
	} else {
		d.LoopWait = d.TTL - 2*d.RetryTimeout
	}
	d.Warnings = append(d.Warnings, fmt.Sprintf("%s violates loop_wait + 2*retry_timeout <= ttl; using loop_wait=%s retry_timeout=%s",
		before, d.LoopWait, d.RetryTimeout))
}

func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case string:
		return x != ""
	case bool:
		return x
	case json.Number:
		return x.String() != "0"
	}
	return true
}

// parseWithUnit parses an integer with an optional time unit suffix (ms, s,
// min, h, d) and returns it in base units (base is time.Second here).
func parseWithUnit(v any, base time.Duration) (int64, bool) {
	if n, ok := parseInt(v); ok {
		return n, true
	}
	s, ok := v.(string)
	if !ok {
		return 0, false
	}
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] == '-' || (s[i] >= '0' && s[i] <= '9')) {
		i++
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, false
	}
	units := map[string]time.Duration{"ms": time.Millisecond, "s": time.Second, "min": time.Minute, "h": time.Hour, "d": 24 * time.Hour}
	u, ok := units[strings.TrimSpace(s[i:])]
	if !ok {
		return 0, false
	}
	return int64(time.Duration(n) * u / base), true
}
