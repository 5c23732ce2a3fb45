package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/pgha/pgha/examples/pgha/internal/config"
	"github.com/pgha/pgha/examples/pgha/internal/ctl"
	"github.com/pgha/pgha/examples/pgha/internal/daemon"
	"github.com/pgha/pgha/examples/pgha/internal/demo"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd, rest := command(args)
	switch cmd {
	case "", "help", "-h", "--help":
		printUsage(stdout)
		if cmd == "" {
			return ctl.ExitUsage
		}
		return ctl.ExitOK
	case "run":
		return runNode(rest, stdout, stderr)
	case "--validate-config", "validate-config":
		return validate(rest, stdout, stderr)
	case "demo":
		return runDemo(rest, stdout, stderr)
	}
	if !ctl.IsCommand(cmd) {
		fmt.Fprintf(stderr, "Error: unknown command %q (pgha help lists them)\n", cmd)
		return ctl.ExitUsage
	}
	// CLI commands end with the first Ctrl-C (list --watch, reinit --wait).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return ctl.Run(ctx, cmd, rest, ctl.IO{Stdin: stdin, Stdout: stdout, Stderr: stderr})
}

// command finds the subcommand: the first argument that is not a global
// option or its value. The rest keeps every other argument in order.
func command(args []string) (string, []string) {
	withValue := map[string]bool{"-c": true, "--config-file": true, "-d": true, "--dcs-url": true, "--dcs": true}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--validate-config" {
			return a, append(append([]string{}, args[:i]...), args[i+1:]...)
		}
		if withValue[a] {
			i++
			continue
		}
		if strings.HasPrefix(a, "-") && a != "-h" && a != "--help" {
			continue
		}
		return a, append(append([]string{}, args[:i]...), args[i+1:]...)
	}
	return "", nil
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `pgha: PostgreSQL high availability, Patroni-compatible (reference daemon and CLI)

Usage:
  pgha run CONFIG.yml                   run a node from a patroni.yml-shaped file
  pgha --validate-config CONFIG.yml     check a configuration, print every problem with its key path
  pgha demo [--dir DIR] [--keep]        start etcd and a 3-node cluster on this machine
  pgha [-c CONFIG] [--dcs-url URL] [-k] COMMAND [ARGS]

Commands (as patronictl's):
`)
	ctl.Usage(w)
	fmt.Fprint(w, `
Global options:
  -c, --config-file CONFIG   a patroni.yml (or patronictl.yaml): scope, namespace, etcd3, ctl/restapi credentials
                             (default: $PGHA_CONFIG_FILE, $PATRONICTL_CONFIG_FILE, ~/.config/patroni/patronictl.yaml)
  -d, --dcs-url URL          etcd3://host:port[,host:port]/namespace (default: $DCS_URL)
  -k, --insecure             do not verify the REST API's TLS certificates

Exit codes: 0 done; 1 the operation failed, was refused or not confirmed; 2 bad command line or configuration;
3 the DCS could not be reached or the cluster is not in it.
`)
}

func runNode(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	validateOnly := fs.Bool("validate-config", false, "check the configuration and exit")
	if err := fs.Parse(args); err != nil {
		return ctl.ExitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "Usage: pgha run [--validate-config] CONFIG.yml")
		return ctl.ExitUsage
	}
	if *validateOnly {
		return validate(fs.Args(), stdout, stderr)
	}
	// Cancel on SIGTERM or SIGINT; daemon.Run then shuts down in order and
	// releases what it holds under its own bounded context.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	err := daemon.Run(ctx, daemon.Options{ConfigPath: fs.Arg(0), LogOutput: stderr, Reload: reload})
	var ce *daemon.ConfigError
	switch {
	case err == nil:
		return ctl.ExitOK
	case errors.As(err, &ce):
		fmt.Fprintf(stderr, "pgha: %v\n", err)
		return ctl.ExitUsage
	default:
		fmt.Fprintf(stderr, "pgha: %v\n", err)
		return ctl.ExitFailed
	}
}

// validate is --validate-config: every problem of the file, with its key
// path, then the checks of this machine. Exit 2 when there are errors.
func validate(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "Usage: pgha --validate-config CONFIG.yml")
		return ctl.ExitUsage
	}
	cfg, err := config.Load(args[0])
	var inv *config.InvalidError
	if err != nil && !errors.As(err, &inv) {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return ctl.ExitUsage
	}
	problems := cfg.Problems
	problems = append(problems, cfg.Check(context.Background())...)
	if err == nil {
		_, notes := cfg.PGConfig(cfg.DynamicConfig())
		for _, n := range notes {
			problems = append(problems, config.Problem{Severity: config.Warning, Msg: n})
		}
	}
	errs, warns := 0, 0
	for _, p := range problems {
		fmt.Fprintf(stdout, "%s: %s\n", p.Severity, p)
		if p.Severity == config.Error {
			errs++
		} else {
			warns++
		}
	}
	if errs > 0 {
		fmt.Fprintf(stdout, "%s: invalid: %d errors, %d warnings\n", args[0], errs, warns)
		return ctl.ExitUsage
	}
	fmt.Fprintf(stdout, "%s: valid (%d warnings)\n", args[0], warns)
	return ctl.ExitOK
}

func runDemo(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return demo.Main(ctx, args, stdout, stderr)
}
