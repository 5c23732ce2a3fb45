package ctl

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/ha"
)

// ListOptions choose what RenderList prints.
type ListOptions struct {
	// Extended adds the Pending restart, Scheduled restart and Tags columns
	// (list -e); without it they appear only when a member has a value.
	Extended bool
	// Format is pretty (default), tsv, json or yaml.
	Format string
	// Topology orders members as a replication tree (topology).
	Topology bool
}

// cell is one value of a row: its text and, for json and yaml, its typed
// value.
type cell struct {
	text  string
	value any
}

// RenderList prints the members of cluster c (named scope) as patronictl
// list does (the format of Patroni 3.0.2's recorded output): Member, Host,
// Role, State, TL, Lag in MB, then the optional columns, and the
// maintenance and scheduled switchover notes under a pretty table.
func RenderList(w io.Writer, c *dcs.Cluster, scope string, o ListOptions) {
	j := ha.ClusterJSON(c)
	members, _ := j["members"].([]map[string]any)
	if o.Topology {
		members = topologySort(members)
	}
	columns := []string{"Cluster", "Member", "Host", "Role", "State", "TL", "Lag in MB"}
	optional := map[string]string{"Pending restart": "pending_restart", "Scheduled restart": "scheduled_restart", "Tags": "tags"}
	for _, col := range []string{"Pending restart", "Scheduled restart", "Tags"} {
		show := o.Extended
		for _, m := range members {
			if v, ok := m[optional[col]]; ok && v != nil && v != false {
				show = true
			}
		}
		if show {
			columns = append(columns, col)
		}
	}
	appendPort := false
	hosts := map[string]bool{}
	for _, m := range members {
		if p, ok := m["port"].(int); ok && p != 5432 {
			appendPort = true
		}
		h, _ := m["host"].(string)
		if hosts[h] {
			appendPort = true
		}
		hosts[h] = true
	}
	var rows [][]cell
	for _, m := range members {
		name, _ := m["name"].(string)
		if lvl, ok := m["_level"].(int); ok && lvl > 0 {
			name = strings.Repeat(" ", (lvl-1)*2) + "+ " + name
		}
		host, _ := m["host"].(string)
		if p, ok := m["port"].(int); ok && appendPort && host != "" {
			host = host + ":" + strconv.Itoa(p)
		}
		role, _ := m["role"].(string)
		state, _ := m["state"].(string)
		row := []cell{
			{text: scope, value: scope},
			{text: name, value: name},
			{text: host, value: host},
			{text: roleTitle(role), value: roleTitle(role)},
			{text: state, value: state},
		}
		if tl, ok := m["timeline"].(int64); ok {
			row = append(row, cell{text: strconv.FormatInt(tl, 10), value: tl})
		} else {
			row = append(row, cell{})
		}
		switch lag := m["lag"].(type) {
		case int64:
			mb := int64(math.RoundToEven(float64(lag) / 1024 / 1024))
			row = append(row, cell{text: strconv.FormatInt(mb, 10), value: mb})
		case string:
			row = append(row, cell{text: lag, value: lag})
		default:
			row = append(row, cell{})
		}
		for _, col := range columns[7:] {
			switch col {
			case "Pending restart":
				if b, _ := m["pending_restart"].(bool); b {
					row = append(row, cell{text: "*", value: "*"})
				} else {
					row = append(row, cell{})
				}
			case "Scheduled restart":
				if sr, ok := m["scheduled_restart"].(map[string]any); ok {
					v := fmt.Sprint(sr["schedule"])
					if pv, ok := sr["postgres_version"]; ok {
						v += fmt.Sprintf(" if version < %v", pv)
					}
					row = append(row, cell{text: v, value: v})
				} else {
					row = append(row, cell{})
				}
			case "Tags":
				if tags, ok := m["tags"].(dcs.Tags); ok && len(tags) > 0 {
					plain := map[string]any(tags)
					text := strings.TrimSpace(dumpYAML(plain))
					if o.Format == "tsv" {
						text = flowYAML(plain)
					}
					row = append(row, cell{text: text, value: plain})
				} else {
					row = append(row, cell{})
				}
			}
		}
		rows = append(rows, row)
	}

	switch o.Format {
	case "json", "yaml", "yml":
		records := make([]record, 0, len(rows))
		for _, r := range rows {
			var rec record
			for i, col := range columns {
				if r[i].text == "" {
					continue // patronictl drops empty values
				}
				rec = append(rec, field{col, r[i].value})
			}
			records = append(records, rec)
		}
		if o.Format == "json" {
			fmt.Fprintln(w, pyJSON(records))
		} else {
			fmt.Fprint(w, dumpYAML(recordsToAny(records)))
		}
		return
	}
	t := &table{columns: columns, right: map[string]bool{"TL": true, "Lag in MB": true}}
	if o.Format != "tsv" {
		t.columns = columns[1:]
		t.title = " Cluster: " + scope + " "
	}
	for _, r := range rows {
		var texts []string
		for _, c := range r {
			texts = append(texts, c.text)
		}
		if o.Format != "tsv" {
			texts = texts[1:]
		}
		t.add(texts...)
	}
	if o.Format == "tsv" {
		t.tsv(w)
		return
	}
	t.render(w)
	var info []string
	if p, _ := j["pause"].(bool); p {
		info = append(info, "Maintenance mode: on")
	}
	if sw, ok := j["scheduled_switchover"].(map[string]any); ok {
		s := fmt.Sprintf("Switchover scheduled at: %v", sw["at"])
		for _, k := range []string{"from", "to"} {
			if v, ok := sw[k]; ok {
				s += fmt.Sprintf("\n%24s: %v", k, v)
			}
		}
		info = append(info, s)
	}
	if len(info) > 0 {
		fmt.Fprintln(w, " "+strings.Join(info, "\n "))
	}
}

func roleTitle(role string) string {
	words := strings.Split(role, "_")
	for i, w := range words {
		if w != "" {
			words[i] = strings.ToUpper(w[:1]) + w[1:]
		}
	}
	return strings.Join(words, " ")
}

// topologySort puts the leader first, then the members replicating from
// each member (the replicatefrom tag), depth first, as patronictl topology.
func topologySort(members []map[string]any) []map[string]any {
	var leader map[string]any
	replicas := map[string]bool{}
	for _, m := range members {
		if r, _ := m["role"].(string); strings.HasSuffix(r, "leader") && leader == nil {
			leader = m
		} else {
			replicas[fmt.Sprint(m["name"])] = true
		}
	}
	leaderName := ""
	if leader != nil {
		leaderName = fmt.Sprint(leader["name"])
	}
	children := map[string][]map[string]any{}
	for _, m := range members {
		if m == nil || (leader != nil && fmt.Sprint(m["name"]) == leaderName) {
			continue
		}
		parent := leaderName
		if tags, ok := m["tags"].(dcs.Tags); ok {
			if rf := tags.ReplicateFrom(); rf != "" && rf != fmt.Sprint(m["name"]) && replicas[rf] {
				parent = rf
			}
		}
		children[parent] = append(children[parent], m)
	}
	var out []map[string]any
	var walk func(level int, name string)
	walk = func(level int, name string) {
		kids := children[name]
		sort.SliceStable(kids, func(i, j int) bool { return fmt.Sprint(kids[i]["name"]) < fmt.Sprint(kids[j]["name"]) })
		for _, k := range kids {
			c := make(map[string]any, len(k)+1)
			for kk, v := range k {
				c[kk] = v
			}
			c["_level"] = level
			out = append(out, c)
			walk(level+1, fmt.Sprint(k["name"]))
		}
	}
	if leader != nil {
		out = append(out, leader)
	}
	walk(1, leaderName)
	return out
}

// record is an ordered JSON object.
type record []field

type field struct {
	key   string
	value any
}

// pyJSON encodes records as Python's json.dumps does: ", " and ": "
// separators, keys in order, non-ASCII escaped.
func pyJSON(v any) string {
	var b strings.Builder
	var enc func(v any)
	enc = func(v any) {
		switch t := v.(type) {
		case []record:
			b.WriteByte('[')
			for i, r := range t {
				if i > 0 {
					b.WriteString(", ")
				}
				enc(r)
			}
			b.WriteByte(']')
		case record:
			b.WriteByte('{')
			for i, f := range t {
				if i > 0 {
					b.WriteString(", ")
				}
				enc(f.key)
				b.WriteString(": ")
				enc(f.value)
			}
			b.WriteByte('}')
		case map[string]any:
			keys := make([]string, 0, len(t))
			for k := range t {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var r record
			for _, k := range keys {
				r = append(r, field{k, t[k]})
			}
			enc(r)
		case string:
			q, _ := json.Marshal(t)
			b.WriteString(asciiJSON(string(q)))
		default:
			q, err := json.Marshal(t)
			if err != nil {
				q, _ = json.Marshal(fmt.Sprint(t))
			}
			b.Write(q)
		}
	}
	enc(v)
	return b.String()
}

func asciiJSON(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x80 {
			b.WriteRune(r)
			continue
		}
		if r > 0xffff {
			r -= 0x10000
			fmt.Fprintf(&b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
			continue
		}
		fmt.Fprintf(&b, `\u%04x`, r)
	}
	return b.String()
}

func recordsToAny(rs []record) []any {
	out := make([]any, 0, len(rs))
	for _, r := range rs {
		m := map[string]any{}
		for _, f := range r {
			m[f.key] = f.value
		}
		out = append(out, m)
	}
	return out
}
