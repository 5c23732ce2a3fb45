package daemon

import (
	"fmt"
	"sort"
	"strings"
)

// filterParameters drops the parameters this PostgreSQL does not know,
// with a warning, as Patroni does ("Removing unexpected parameter"), so a
// typo or a setting of another version does not stop Postgres from
// starting. Names with a dot (extension settings) are passed through.
func (d *daemon) filterParameters(params map[string]string) map[string]string {
	if d.known == nil {
		return params
	}
	out := make(map[string]string, len(params))
	var dropped []string
	for k, v := range params {
		if strings.Contains(k, ".") || d.known[strings.ToLower(k)] {
			out[k] = v
			continue
		}
		dropped = append(dropped, k)
	}
	sort.Strings(dropped)
	d.warnedMu.Lock()
	defer d.warnedMu.Unlock()
	if d.warned == nil {
		d.warned = map[string]bool{}
	}
	for _, k := range dropped {
		if d.warned[k+"="+params[k]] {
			continue
		}
		d.warned[k+"="+params[k]] = true
		d.log.Warn(fmt.Sprintf("configuration: postgresql.parameters.%s: not a parameter of this PostgreSQL "+
			"(postgres --describe-config); removed, as Patroni does", k), "value", params[k])
	}
	return out
}
