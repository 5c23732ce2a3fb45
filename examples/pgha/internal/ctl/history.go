package ctl

import (
	"fmt"
	"io"
	"strconv"

	"github.com/pgha/pgha/dcs"
)

// RenderHistory prints /history as patronictl history does: TL, LSN,
// Reason, Timestamp, New Leader.
func RenderHistory(w io.Writer, c *dcs.Cluster, format string) {
	columns := []string{"TL", "LSN", "Reason", "Timestamp", "New Leader"}
	var lines []dcs.HistoryLine
	if c != nil && c.History != nil {
		lines = c.History.Lines
	}
	switch format {
	case "json", "yaml", "yml":
		records := make([]record, 0, len(lines))
		for _, l := range lines {
			records = append(records, record{{"TL", l.Timeline}, {"LSN", l.LSN}, {"Reason", l.Reason},
				{"Timestamp", l.Timestamp}, {"New Leader", l.NewLeader}})
		}
		if format == "json" {
			fmt.Fprintln(w, pyJSON(records))
		} else {
			fmt.Fprint(w, dumpYAML(recordsToAny(records)))
		}
		return
	}
	t := &table{columns: columns, right: map[string]bool{"TL": true, "LSN": true}}
	for _, l := range lines {
		t.add(strconv.FormatInt(l.Timeline, 10), strconv.FormatInt(l.LSN, 10), l.Reason, l.Timestamp, l.NewLeader)
	}
	if format == "tsv" {
		t.tsv(w)
		return
	}
	t.render(w)
}
