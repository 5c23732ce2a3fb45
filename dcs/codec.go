package dcs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// All JSON pgha writes is compact (no spaces), as Patroni's.

// EncodeMember encodes a member key value.
func EncodeMember(d MemberData) ([]byte, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("%w: member: %v", ErrInvalidValue, err)
	}
	return b, nil
}

// DecodeMember decodes a member key value. It accepts the JSON object Patroni
// writes, fields of unexpected types (each reported, the rest kept), and the
// legacy form: a postgres:// URL whose application_name parameter carries the
// api_url. On error the returned data holds whatever could be read.
func DecodeMember(b []byte) (MemberData, error) {
	var d MemberData
	trimmed := bytes.TrimSpace(b)
	if bytes.HasPrefix(trimmed, []byte("postgres")) {
		u, err := url.Parse(string(trimmed))
		if err != nil {
			return d, fmt.Errorf("%w: legacy member url: %v", ErrInvalidValue, err)
		}
		q := u.Query()
		d.APIURL = q.Get("application_name")
		q.Del("application_name")
		u.RawQuery = q.Encode()
		d.ConnURL = u.String()
		return d, nil
	}
	obj, err := decodeObject(trimmed)
	if err != nil {
		return d, fmt.Errorf("%w: member: %v", ErrInvalidValue, err)
	}
	var bad []string
	str := func(k string, dst *string) {
		if v, ok := obj[k]; ok && v != nil {
			if s, ok := v.(string); ok {
				*dst = s
			} else {
				bad = append(bad, k)
			}
		}
	}
	boolean := func(k string, dst *bool) {
		if v, ok := obj[k]; ok && v != nil {
			if b, ok := parseBool(v); ok {
				*dst = b
			} else {
				bad = append(bad, k)
			}
		}
	}
	integer := func(k string) *int64 {
		v, ok := obj[k]
		if !ok || v == nil {
			return nil
		}
		n, ok := parseInt(v)
		if !ok {
			bad = append(bad, k)
			return nil
		}
		return &n
	}
	str("conn_url", &d.ConnURL)
	if d.ConnURL == "" {
		// conn_kwargs may replace conn_url; keep a readable form.
		if kw, ok := obj["conn_kwargs"].(map[string]any); ok {
			d.ConnURL = connURLFromKwargs(kw)
		}
	}
	str("api_url", &d.APIURL)
	str("state", &d.State)
	str("role", &d.Role)
	str("version", &d.Version)
	str("proxy_url", &d.ProxyURL)
	str("replication_state", &d.ReplicationState)
	if v, ok := obj["checkpoint_after_promote"]; ok && v != nil {
		if b, ok := parseBool(v); ok {
			d.CheckpointAfterPromote = &b
		} else {
			bad = append(bad, "checkpoint_after_promote")
		}
	}
	boolean("pending_restart", &d.PendingRestart)
	boolean("pause", &d.Pause)
	if v, ok := obj["tags"]; ok && v != nil {
		if m, ok := v.(map[string]any); ok {
			d.Tags = Tags(m)
		} else {
			bad = append(bad, "tags")
		}
	}
	if v, ok := obj["pending_restart_reason"]; ok && v != nil {
		if m, ok := v.(map[string]any); ok {
			d.PendingRestartReason = map[string]PendingChange{}
			for k, pv := range m {
				pm, _ := pv.(map[string]any)
				d.PendingRestartReason[k] = PendingChange{OldValue: fmt.Sprint(pm["old_value"]), NewValue: fmt.Sprint(pm["new_value"])}
			}
		} else {
			bad = append(bad, "pending_restart_reason")
		}
	}
	if v, ok := obj["scheduled_restart"]; ok && v != nil {
		if m, ok := v.(map[string]any); ok {
			d.ScheduledRestart = m
		} else {
			bad = append(bad, "scheduled_restart")
		}
	}
	d.XLogLocation = integer("xlog_location")
	d.ReceiveLSN = integer("receive_lsn")
	d.ReplayLSN = integer("replay_lsn")
	if tl := integer("timeline"); tl != nil {
		d.Timeline = *tl
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return d, fmt.Errorf("%w: member: fields of the wrong type: %s", ErrInvalidValue, strings.Join(bad, ", "))
	}
	return d, nil
}

func connURLFromKwargs(kw map[string]any) string {
	host, _ := kw["host"].(string)
	port := fmt.Sprint(kw["port"])
	db, _ := kw["dbname"].(string)
	if db == "" {
		db = "postgres"
	}
	if host == "" {
		return ""
	}
	if port != "" && port != "<nil>" {
		host += ":" + port
	}
	return "postgres://" + host + "/" + db
}

// EncodeFailover encodes a /failover value. The empty request encodes as {}.
func EncodeFailover(f Failover) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	sep := ""
	field := func(k, v string) {
		kb, _ := json.Marshal(k)
		vb, _ := json.Marshal(v)
		b.WriteString(sep)
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
		sep = ","
	}
	if f.Leader != "" {
		field("leader", f.Leader)
	}
	if f.Candidate != "" {
		field("member", f.Candidate)
	}
	if !f.ScheduledAt.IsZero() {
		field("scheduled_at", FormatTime(f.ScheduledAt))
	}
	b.WriteByte('}')
	return b.Bytes()
}

// DecodeFailover decodes a /failover value with Patroni's rules: {} or any
// non-object is the empty request; invalid JSON containing ':' is the legacy
// "leader:candidate" form. An unparsable scheduled_at is an error (the request
// is kept without a schedule).
func DecodeFailover(b []byte) (Failover, error) {
	var f Failover
	trimmed := bytes.TrimSpace(b)
	var v any
	if err := jsonUnmarshal(trimmed, &v); err != nil {
		if s := string(trimmed); strings.Contains(s, ":") {
			f.Leader, f.Candidate, _ = strings.Cut(s, ":")
			f.Leader, f.Candidate = strings.TrimSpace(f.Leader), strings.TrimSpace(f.Candidate)
			return f, nil
		}
		if len(trimmed) == 0 {
			return f, nil
		}
		return f, fmt.Errorf("%w: failover: %v", ErrInvalidValue, err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return f, nil // Patroni: non-object JSON is the empty request
	}
	f.Leader, _ = obj["leader"].(string)
	f.Candidate, _ = obj["member"].(string)
	if s, ok := obj["scheduled_at"].(string); ok && s != "" {
		t, err := ParseTime(s)
		if err != nil {
			return f, fmt.Errorf("%w: failover: scheduled_at: %v", ErrInvalidValue, err)
		}
		f.ScheduledAt = t
	}
	return f, nil
}

// EncodeSync encodes a /sync value as Patroni 4 writes it:
// {"leader":..,"quorum":..,"sync_standby":"a,b"|null}, standbys sorted.
func EncodeSync(s SyncState) []byte {
	lb, _ := json.Marshal(s.Leader)
	var b bytes.Buffer
	b.WriteString(`{"leader":`)
	b.Write(lb)
	b.WriteString(`,"quorum":`)
	b.WriteString(strconv.Itoa(s.Quorum))
	b.WriteString(`,"sync_standby":`)
	if len(s.Standbys) == 0 {
		b.WriteString("null")
	} else {
		sorted := slices.Clone(s.Standbys)
		slices.Sort(sorted)
		sb, _ := json.Marshal(strings.Join(sorted, ","))
		b.Write(sb)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// DecodeSync decodes a /sync value: non-object or invalid JSON is the empty
// state (invalid JSON is also reported); quorum is taken only with a leader.
func DecodeSync(b []byte) (SyncState, error) {
	var s SyncState
	var v any
	if err := jsonUnmarshal(bytes.TrimSpace(b), &v); err != nil {
		return s, fmt.Errorf("%w: sync: %v", ErrInvalidValue, err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return s, nil
	}
	s.Leader, _ = obj["leader"].(string)
	if s.Leader == "" {
		return SyncState{}, nil
	}
	if q, ok := parseInt(obj["quorum"]); ok {
		s.Quorum = int(q)
	}
	if ss, ok := obj["sync_standby"].(string); ok {
		for _, part := range strings.Split(ss, ",") {
			if part = strings.TrimSpace(part); part != "" {
				s.Standbys = append(s.Standbys, part)
			}
		}
		slices.Sort(s.Standbys)
	}
	return s, nil
}

// EncodeHistory encodes a /history value. Lines without a timestamp or new
// leader are written with 3 or 4 elements, as older Patroni wrote them.
func EncodeHistory(lines []HistoryLine) ([]byte, error) {
	out := make([][]any, 0, len(lines))
	for _, l := range lines {
		row := []any{l.Timeline, l.LSN, l.Reason}
		if l.Timestamp != "" || l.NewLeader != "" {
			row = append(row, l.Timestamp)
		}
		if l.NewLeader != "" {
			row = append(row, l.NewLeader)
		}
		out = append(out, row)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("%w: history: %v", ErrInvalidValue, err)
	}
	return b, nil
}

// DecodeHistory decodes a /history value: a JSON array of arrays
// [timeline, lsn, reason(, timestamp(, new_leader))]. On error the result
// is invalid (cluster timeline 0).
func DecodeHistory(b []byte) (History, error) {
	var rows []any
	if err := jsonUnmarshal(bytes.TrimSpace(b), &rows); err != nil {
		return History{}, fmt.Errorf("%w: history: %v", ErrInvalidValue, err)
	}
	h := History{Valid: true, Lines: make([]HistoryLine, 0, len(rows))}
	for i, r := range rows {
		row, ok := r.([]any)
		if !ok || len(row) < 2 {
			return History{}, fmt.Errorf("%w: history: line %d is not [timeline, lsn, ...]", ErrInvalidValue, i)
		}
		tl, ok1 := parseInt(row[0])
		lsn, ok2 := parseInt(row[1])
		if !ok1 || !ok2 {
			return History{}, fmt.Errorf("%w: history: line %d has a non-integer timeline or lsn", ErrInvalidValue, i)
		}
		line := HistoryLine{Timeline: tl, LSN: lsn}
		if len(row) > 2 {
			line.Reason = fmt.Sprint(row[2])
		}
		if len(row) > 3 && row[3] != nil {
			line.Timestamp = fmt.Sprint(row[3])
		}
		if len(row) > 4 && row[4] != nil {
			line.NewLeader = fmt.Sprint(row[4])
		}
		h.Lines = append(h.Lines, line)
	}
	return h, nil
}

// EncodeStatus encodes a /status value: {"optime":N,"slots":{..},"retain_slots":[..]},
// with absent fields omitted.
func EncodeStatus(s Status) []byte {
	var b bytes.Buffer
	b.WriteString(`{"optime":`)
	b.WriteString(strconv.FormatInt(s.Optime, 10))
	if s.Slots != nil {
		sb, _ := json.Marshal(s.Slots)
		b.WriteString(`,"slots":`)
		b.Write(sb)
	}
	if s.RetainSlots != nil {
		rb, _ := json.Marshal(s.RetainSlots)
		b.WriteString(`,"retain_slots":`)
		b.Write(rb)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// DecodeStatus decodes a /status value. A bare integer is the legacy optime;
// slots and retain_slots may themselves be JSON-encoded strings. Anything
// unparsable is the empty status (optime 0) and an error.
func DecodeStatus(b []byte) (Status, error) {
	var v any
	if err := jsonUnmarshal(bytes.TrimSpace(b), &v); err != nil {
		return Status{}, fmt.Errorf("%w: status: %v", ErrInvalidValue, err)
	}
	if n, ok := parseInt(v); ok {
		return Status{Optime: n}, nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return Status{}, fmt.Errorf("%w: status: not an object", ErrInvalidValue)
	}
	var s Status
	if o, present := obj["optime"]; present && o != nil {
		n, ok := parseInt(o)
		if !ok {
			return Status{}, fmt.Errorf("%w: status: optime is not an integer", ErrInvalidValue)
		}
		s.Optime = n
	}
	if raw, present := obj["slots"]; present && raw != nil {
		raw = maybeJSONString(raw)
		m, ok := raw.(map[string]any)
		if !ok {
			return Status{}, fmt.Errorf("%w: status: slots is not an object", ErrInvalidValue)
		}
		s.Slots = make(map[string]int64, len(m))
		for k, sv := range m {
			n, ok := parseInt(sv)
			if !ok {
				return Status{}, fmt.Errorf("%w: status: slot %q position is not an integer", ErrInvalidValue, k)
			}
			s.Slots[k] = n
		}
	}
	if raw, present := obj["retain_slots"]; present && raw != nil {
		raw = maybeJSONString(raw)
		arr, ok := raw.([]any)
		if !ok {
			return Status{}, fmt.Errorf("%w: status: retain_slots is not an array", ErrInvalidValue)
		}
		s.RetainSlots = make([]string, 0, len(arr))
		for _, a := range arr {
			str, ok := a.(string)
			if !ok {
				return Status{}, fmt.Errorf("%w: status: retain_slots holds a non-string", ErrInvalidValue)
			}
			s.RetainSlots = append(s.RetainSlots, str)
		}
	}
	return s, nil
}

func maybeJSONString(v any) any {
	s, ok := v.(string)
	if !ok {
		return v
	}
	var out any
	if err := jsonUnmarshal([]byte(s), &out); err != nil {
		return v
	}
	return out
}

// EncodeFailsafe encodes a /failsafe value.
func EncodeFailsafe(members map[string]string) []byte {
	if members == nil {
		members = map[string]string{}
	}
	b, _ := json.Marshal(members)
	return b
}

// DecodeFailsafe decodes a /failsafe value: an object of name → api_url.
func DecodeFailsafe(b []byte) (map[string]string, error) {
	obj, err := decodeObject(bytes.TrimSpace(b))
	if err != nil {
		return nil, fmt.Errorf("%w: failsafe: %v", ErrInvalidValue, err)
	}
	out := make(map[string]string, len(obj))
	for k, v := range obj {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%w: failsafe: %q is not a string", ErrInvalidValue, k)
		}
		out[k] = s
	}
	return out, nil
}

// EncodeConfig encodes a /config value (compact JSON object).
func EncodeConfig(data map[string]any) ([]byte, error) {
	if data == nil {
		data = map[string]any{}
	}
	b, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("%w: config: %v", ErrInvalidValue, err)
	}
	return b, nil
}

// DecodeConfig decodes a /config value. Non-object or invalid JSON is the
// empty object (and an error), as in Patroni.
func DecodeConfig(b []byte) (map[string]any, error) {
	obj, err := decodeObject(bytes.TrimSpace(b))
	if err != nil {
		return map[string]any{}, fmt.Errorf("%w: config: %v", ErrInvalidValue, err)
	}
	return obj, nil
}

// DecodeInitialize decodes an /initialize value: a system identifier (digits)
// or "" while bootstrap runs.
func DecodeInitialize(b []byte) (string, error) {
	s := strings.TrimSpace(string(b))
	for _, r := range s {
		if r < '0' || r > '9' {
			return s, fmt.Errorf("%w: initialize: %q is not a system identifier", ErrInvalidValue, s)
		}
	}
	return s, nil
}

// timeLayouts are the forms a Patroni timestamp may take (Python isoformat,
// with or without fraction, 'T' or space, and RFC 3339).
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999-07:00",
	"2006-01-02 15:04:05.999999-07:00",
	"2006-01-02T15:04:05-0700",
	"2006-01-02T15:04:05.999999-0700",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05",
}

// ParseTime parses an ISO 8601 timestamp as Patroni writes and accepts them.
// A timestamp without a zone is taken as UTC.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("cannot parse %q as an ISO 8601 time", s)
}

// FormatTime formats t as Python's isoformat() does for an aware datetime
// (microseconds, numeric zone), e.g. 2026-11-26T02:28:20.246384+00:00.
func FormatTime(t time.Time) string {
	if t.Nanosecond()/1000 == 0 {
		return t.Format("2006-01-02T15:04:05-07:00")
	}
	return t.Format("2006-01-02T15:04:05.000000-07:00")
}

// decodeObject decodes a JSON object with numbers kept as json.Number.
func decodeObject(b []byte) (map[string]any, error) {
	var v any
	if err := jsonUnmarshal(b, &v); err != nil {
		return nil, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not a JSON object")
	}
	return obj, nil
}

func jsonUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after JSON value")
	}
	return nil
}

// parseBool applies Patroni's parse_bool: booleans, and on/true/yes/1 or
// off/false/no/0 in any case. ok is false otherwise.
func parseBool(v any) (val, ok bool) {
	switch x := v.(type) {
	case bool:
		return x, true
	case json.Number:
		return parseBool(x.String())
	case float64:
		if x == 1 {
			return true, true
		} else if x == 0 {
			return false, true
		}
	case int, int64:
		return parseBool(fmt.Sprint(x))
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "on", "true", "yes", "1":
			return true, true
		case "off", "false", "no", "0":
			return false, true
		}
	}
	return false, false
}

// parseInt accepts JSON integers, integral floats and decimal strings.
func parseInt(v any) (int64, bool) {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n, true
		}
		if f, err := x.Float64(); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<63 {
			return int64(f), true
		}
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<63 {
			return int64(x), true
		}
	case int:
		return int64(x), true
	case int64:
		return x, true
	case string:
		if n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64); err == nil {
			return n, true
		}
	}
	return 0, false
}
