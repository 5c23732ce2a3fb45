package ctl

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// table renders rows the way patronictl does with PrettyTable: a frame of
// +---+ lines, cells padded by one space, the title written into the top
// border, and a rule between every row when a cell has several lines.
type table struct {
	title   string
	columns []string
	right   map[string]bool
	rows    [][]string
}

func (t *table) add(row ...string) { t.rows = append(t.rows, row) }

func (t *table) render(w io.Writer) {
	widths := make([]int, len(t.columns))
	multi := false
	for i, c := range t.columns {
		widths[i] = utf8.RuneCountInString(c)
	}
	for _, r := range t.rows {
		for i, cell := range r {
			for _, line := range strings.Split(cell, "\n") {
				widths[i] = max(widths[i], utf8.RuneCountInString(line))
			}
			if strings.Contains(cell, "\n") {
				multi = true
			}
		}
	}
	var rule strings.Builder
	rule.WriteByte('+')
	for _, wd := range widths {
		rule.WriteString(strings.Repeat("-", wd+2))
		rule.WriteByte('+')
	}
	hr := rule.String()
	top := hr
	if t.title != "" {
		// PatronictlPrettyTable: ret[0] + header + ret[1+len(header):]
		h := t.title
		if n := utf8.RuneCountInString(hr) - 2; utf8.RuneCountInString(h) > n {
			h = string([]rune(h)[:n])
		}
		top = hr[:1] + h + string([]rune(hr)[1+utf8.RuneCountInString(h):])
	}
	line := func(cells []string) {
		height := 1
		split := make([][]string, len(cells))
		for i, c := range cells {
			split[i] = strings.Split(c, "\n")
			height = max(height, len(split[i]))
		}
		for l := 0; l < height; l++ {
			var b strings.Builder
			b.WriteByte('|')
			for i := range widths {
				v := ""
				if i < len(split) && l < len(split[i]) {
					v = split[i][l]
				}
				pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(v))
				if t.right[t.columns[i]] {
					b.WriteString(" " + pad + v + " |")
				} else {
					b.WriteString(" " + v + pad + " |")
				}
			}
			fmt.Fprintln(w, b.String())
		}
	}
	fmt.Fprintln(w, top)
	line(t.columns)
	fmt.Fprintln(w, hr)
	for i, r := range t.rows {
		line(r)
		if multi && i < len(t.rows)-1 {
			fmt.Fprintln(w, hr)
		}
	}
	fmt.Fprintln(w, hr)
}

// tsv renders the table as tab-separated values with a header line.
func (t *table) tsv(w io.Writer) {
	fmt.Fprintln(w, strings.Join(t.columns, "\t"))
	for _, r := range t.rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
}
