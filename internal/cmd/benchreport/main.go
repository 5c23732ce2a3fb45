package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pgha/pgha/pg"
)

// The figures, in table order.
const (
	figNodeLoss      = "node-loss failover: SIGKILL agent+postmaster -> first write on new primary"
	figExpiry        = "  of which: leader key deleted (lease expired) -> first write"
	figRejoin        = "killed node back as a streaming replica after its restart"
	figCrash         = "Postgres crash (SIGKILL postmaster) -> first write on a new postmaster"
	figSwitchDirect  = "switchover write outage, direct"
	figSwitchHAProxy = "switchover write outage, through HAProxy (/primary checks)"
	figSwitchRouter  = "switchover write outage, through the pgha router"
	figFailHAProxy   = "failed transactions during a switchover, through HAProxy"
	figFailRouter    = "failed transactions during a switchover, through the router"
	figOpPlain       = "acquire+SELECT 1+release, plain pgxpool on the primary"
	figOpRouter      = "acquire+SELECT 1+release through the pgha router"
	figOpHAProxy     = "acquire+SELECT 1+release through HAProxy (TCP)"
	figOverRouter    = "router time / plain pgxpool time (same run)"
	figOverHAProxy   = "HAProxy time / plain pgxpool time (same run)"
	figPathCmp       = "write path: pgha router (pgha) vs HAProxy (Patroni)"
	figRSS           = "agent RSS per node"
	figCPU           = "agent idle CPU per node (% of one core)"
	figEtcd          = "etcd requests/s per node at idle (gRPC messages received)"
)

type figure struct {
	name string
	unit string // "s", "n", "us", "%", "MiB", "/s"
}

var figures = []figure{
	{figNodeLoss, "s"}, {figExpiry, "s"}, {figRejoin, "s"}, {figCrash, "s"},
	{figSwitchDirect, "s"}, {figSwitchHAProxy, "s"}, {figSwitchRouter, "s"},
	{figFailHAProxy, "n"}, {figFailRouter, "n"},
	{figOpPlain, "us"}, {figOpRouter, "us"}, {figOpHAProxy, "us"},
	{figOverRouter, "x"}, {figOverHAProxy, "x"}, {figPathCmp, "us"},
	{figRSS, "MiB"}, {figCPU, "%"}, {figEtcd, "/s"},
}

// timing is the DCS timing both systems get.
type timing struct{ ttl, loopWait, retry int }

func main() {
	n := flag.Int("n", 3, "number of runs of each measurement")
	ttl := flag.Int("ttl", 6, "ttl (seconds), for both systems")
	loopWait := flag.Int("loop-wait", 1, "loop_wait (seconds), for both systems")
	retry := flag.Int("retry-timeout", 2, "retry_timeout (seconds), for both systems")
	window := flag.Duration("idle-window", 10*time.Second, "length of each idle measurement window")
	compare := flag.Bool("compare-patroni", false, "also measure Debian's patroni (installed with apt-get if missing) and print ratios")
	verbose := flag.Bool("v", false, "print the pgha harness's and nodes' logs to stderr")
	skipPgha := flag.Bool("skip-pgha", false, "with --compare-patroni: measure Patroni alone (to debug its setup)")
	flag.Parse()
	t := timing{*ttl, *loopWait, *retry}
	if *n < 1 || t.ttl < 1 || t.loopWait < 1 || t.retry < 1 {
		fmt.Fprintln(os.Stderr, "benchreport: -n, -ttl, -loop-wait and -retry-timeout must be positive")
		os.Exit(2)
	}
	if t.loopWait+2*t.retry > t.ttl {
		fmt.Fprintln(os.Stderr, "benchreport: loop_wait + 2*retry_timeout must not exceed ttl (Patroni's rule)")
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "benchreport: run as root (PostgreSQL and Patroni run as the postgres OS user)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, t, *n, *window, *compare, *skipPgha, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, t timing, n int, window time.Duration, compare, skipPgha, verbose bool) error {
	log := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
	}
	binDir, err := pg.FindBinDir(ctx)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "benchreport-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	all := map[string]results{}
	labels := []string{"pgha"}
	if skipPgha && compare {
		log("pgha: skipped (-skip-pgha)")
	} else {
		log("pgha: starting a 3-node cluster (ttl=%d loop_wait=%d retry_timeout=%d)", t.ttl, t.loopWait, t.retry)
		ps, err := startPgha(ctx, t, verbose)
		if err != nil {
			return err
		}
		all["pgha"], err = measureSystem(ctx, ps, t, n, window, tmp, log)
		if cerr := ps.close(); cerr != nil && err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("pgha: %w", err)
		}
	}
	version := ""
	if compare {
		labels = append(labels, "patroni")
		log("patroni: starting a 3-node cluster (ttl=%d loop_wait=%d retry_timeout=%d)", t.ttl, t.loopWait, t.retry)
		pt, err := startPatroni(ctx, t, binDir)
		if err != nil {
			return fmt.Errorf("patroni: %w", err)
		}
		version = patroniVersion(ctx)
		all["patroni"], err = measureSystem(ctx, pt, t, n, window, tmp, log)
		if cerr := pt.close(); cerr != nil && err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("patroni: %w (its logs: %s/pat*/patroni.log with BENCHREPORT_KEEP=1)", err, pt.dir)
		}
	}
	fmt.Fprintf(out, "\nbenchreport: 3 nodes each, PostgreSQL from %s, ttl=%d loop_wait=%d retry_timeout=%d, n=%d runs, idle windows of %s",
		binDir, t.ttl, t.loopWait, t.retry, n, window)
	if version != "" {
		fmt.Fprintf(out, ", %s", version)
	}
	fmt.Fprintln(out)
	printTable(out, figures, labels, all)
	return nil
}

func format(v float64, unit string) string {
	switch unit {
	case "s":
		return fmt.Sprintf("%.2f s", v)
	case "n":
		return fmt.Sprintf("%.0f", v)
	case "us":
		return fmt.Sprintf("%.0f µs", v)
	case "%":
		return fmt.Sprintf("%.1f %%", v)
	case "x":
		return fmt.Sprintf("%.2fx", v)
	case "MiB":
		return fmt.Sprintf("%.1f MiB", v)
	case "/s":
		return fmt.Sprintf("%.2f/s", v)
	}
	return fmt.Sprint(v)
}

// printTable prints one row per figure: each system's median and max, and
// the ratio of the first system's median to the second's.
func printTable(out io.Writer, figs []figure, labels []string, all map[string]results) {
	header := []string{"figure"}
	for _, l := range labels {
		header = append(header, l+" median", l+" max")
	}
	if len(labels) == 2 {
		header = append(header, labels[0]+"/"+labels[1])
	}
	rows := [][]string{header}
	for _, f := range figs {
		row := []string{f.name}
		var meds []float64
		okAll := true
		for _, l := range labels {
			med, mx, ok := stats(all[l][f.name])
			if !ok {
				row = append(row, "-", "-")
				okAll = false
				continue
			}
			meds = append(meds, med)
			row = append(row, format(med, f.unit), format(mx, f.unit))
		}
		if len(labels) == 2 {
			switch {
			case !okAll:
				row = append(row, "-")
			case meds[1] == 0 && meds[0] == 0:
				row = append(row, "=")
			case meds[1] == 0:
				row = append(row, "inf")
			default:
				row = append(row, fmt.Sprintf("%.2f", meds[0]/meds[1]))
			}
		}
		rows = append(rows, row)
	}
	width := make([]int, len(header))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	for k, r := range rows {
		var b strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if i == 0 {
				b.WriteString(c + pad)
			} else {
				b.WriteString(" | " + pad + c)
			}
		}
		fmt.Fprintln(out, b.String())
		if k == 0 {
			fmt.Fprintln(out, strings.Repeat("-", len([]rune(b.String()))))
		}
	}
}
