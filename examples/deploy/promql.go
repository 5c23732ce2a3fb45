package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// promKeywords are PromQL words that are not metric names: aggregation
// operators, set and grouping keywords, and modifiers.
var promKeywords = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true, "limitk": true,
	"limit_ratio": true, "and": true, "or": true, "unless": true, "by": true, "without": true, "on": true,
	"ignoring": true, "group_left": true, "group_right": true, "offset": true, "bool": true, "atan2": true,
	"start": true, "end": true, "inf": true, "nan": true,
}

var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	promRange    = regexp.MustCompile(`\[[^\[\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	grafanaVar   = regexp.MustCompile(`\$\{[^}]*\}|\$\w+`)
	labelValues  = regexp.MustCompile(`^\s*label_values\s*\(\s*([^,()]+?)\s*(?:,\s*\w+\s*)?\)\s*$`)
	promIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promNumber   = regexp.MustCompile(`\b\d+(\.\d+)?([eE][+-]?\d+)?\b`)
	promDuration = regexp.MustCompile(`\b(\d+(ms|s|m|h|d|w|y))+\b`)
)

// MetricNames returns the metric names a PromQL expression reads, sorted and
// without duplicates. It understands what dashboards and alert rules use:
// label matchers, range and subquery brackets, grouping clauses, functions,
// aggregations, Grafana's $variables and its label_values(metric, label)
// template query. It is a scanner, not a full parser: an expression it
// cannot make sense of yields an error.
func MetricNames(expr string) ([]string, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, errors.New("deploy: empty expression")
	}
	if m := labelValues.FindStringSubmatch(expr); m != nil {
		expr = m[1]
	}
	if strings.Count(expr, "(") != strings.Count(expr, ")") || strings.Count(expr, "{") != strings.Count(expr, "}") ||
		strings.Count(expr, "[") != strings.Count(expr, "]") {
		return nil, fmt.Errorf("deploy: unbalanced brackets in %q", expr)
	}
	s := promString.ReplaceAllString(expr, `""`)
	s = grafanaVar.ReplaceAllString(s, "1m")
	for prev := ""; prev != s; {
		prev = s
		s = promMatchers.ReplaceAllString(s, " ")
		s = promRange.ReplaceAllString(s, " ")
	}
	s = promGrouping.ReplaceAllString(s, " ")
	s = promDuration.ReplaceAllString(s, " ")
	s = promNumber.ReplaceAllString(s, " ")
	var names []string
	for _, loc := range promIdent.FindAllStringIndex(s, -1) {
		word := s[loc[0]:loc[1]]
		rest := strings.TrimLeft(s[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") || promKeywords[strings.ToLower(word)] {
			continue // a function or an aggregation
		}
		if !slices.Contains(names, word) {
			names = append(names, word)
		}
	}
	slices.Sort(names)
	return names, nil
}

// DashboardQueries returns every PromQL expression of a Grafana dashboard
// (JSON model): each panel's targets, panels nested in rows included, and
// the templating variables' queries.
func DashboardQueries(dashboard []byte) ([]string, error) {
	var d struct {
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(dashboard, &d); err != nil {
		return nil, fmt.Errorf("deploy: dashboard: %w", err)
	}
	var out []string
	var walk func(raw []json.RawMessage) error
	walk = func(raw []json.RawMessage) error {
		for _, r := range raw {
			var p struct {
				Title   string            `json:"title"`
				Panels  []json.RawMessage `json:"panels"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			}
			if err := json.Unmarshal(r, &p); err != nil {
				return fmt.Errorf("deploy: dashboard panel: %w", err)
			}
			for _, t := range p.Targets {
				if strings.TrimSpace(t.Expr) == "" {
					return fmt.Errorf("deploy: dashboard panel %q has a target without an expression", p.Title)
				}
				out = append(out, t.Expr)
			}
			if err := walk(p.Panels); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(d.Panels); err != nil {
		return nil, err
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		switch q := v.Query.(type) {
		case string:
			out = append(out, q)
		case map[string]any:
			if s, ok := q["query"].(string); ok {
				out = append(out, s)
			}
		}
	}
	return out, nil
}

// AlertQueries returns the expressions of a Prometheus rules file, by alert
// (or recording rule) name.
func AlertQueries(rules []byte) (map[string]string, error) {
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(rules, &f); err != nil {
		return nil, fmt.Errorf("deploy: rules: %w", err)
	}
	out := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			if name == "" || strings.TrimSpace(r.Expr) == "" {
				return nil, fmt.Errorf("deploy: rules: group %q has a rule without a name or an expression", g.Name)
			}
			if _, dup := out[name]; dup {
				return nil, fmt.Errorf("deploy: rules: %q is defined twice", name)
			}
			out[name] = r.Expr
		}
	}
	return out, nil
}
