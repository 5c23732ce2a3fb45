// Package pg drives one PostgreSQL instance through every state Patroni
// drives it through: initdb, start, stop, restart, reload, promote,
// configure as a standby, clone from a primary, rewind after a timeline
// divergence, and single-user crash recovery; and it reports the instance's
// state (running, role, timeline, system identifier, LSNs, WAL receiver,
// pg_controldata) and its crashes. It runs the real PostgreSQL programs
// (13 or newer) and queries the server with pgx.
//
// pg makes no HA decisions: the ha package decides, pg executes and
// observes.
//
// # Usage
//
// Describe the instance with a [Config] and create it with [New], which
// validates the configuration, finds the binaries (Config.BinDir, else
// $PGHA_PG_BIN, else `pg_config --bindir`, else the newest
// /usr/lib/postgresql/*/bin; see [FindBinDir]) and the OS user, and starts
// nothing:
//
//	inst, err := pg.New(ctx, pg.Config{
//		Name:          "node1",
//		DataDir:       "/var/lib/pgha/node1",
//		ListenAddress: "10.0.0.1", // also the ConnectAddress others use
//		Port:          5432,
//		Superuser:     pg.Credentials{Username: "postgres", Password: su},
//		Replication:   pg.Credentials{Username: "replicator", Password: repl},
//		HBA: []string{
//			"local all all trust",
//			"host all all 10.0.0.0/8 scram-sha-256",
//			"host replication replicator 10.0.0.0/8 scram-sha-256",
//		},
//	})
//
// A first member runs [Instance.Initdb], [Instance.Start] and
// [Instance.EnsureRoles]; another one runs [Instance.Clone] from it (which
// leaves it configured as its standby) and [Instance.Start]. Every method
// that can block takes a context and is also bounded by Config.Timeout
// (Config.TransferTimeout for clone, rewind and crash recovery).
//
// Configuration is layered so that the user's files are left alone:
// postgresql.conf gets one line, include_if_exists = 'pgha.conf', and pgha
// owns pgha.conf (Config.Parameters), pgha.recovery.conf (the standby
// settings: primary_conninfo with application_name = Config.Name and a
// passfile, primary_slot_name, recovery_target_timeline = 'latest') and,
// when Config.HBA is set, pgha_hba.conf (hba_file points at it). The GUCs
// Patroni protects (SPEC 6.3: wal_level, hot_standby, wal_log_hints,
// max_wal_senders, max_replication_slots, ...; see [ResolveParameters]) go
// on the postmaster command line, where no file can override them; an
// invalid value falls back to the default, with the reason logged.
// Replication slot names come from member names with [SlotName].
//
// # Lifecycle
//
// The states and the calls between them:
//
//	empty      --Initdb-->                    stopped (primary)
//	empty      --Clone(upstream)-->           stopped (standby of upstream)
//	stopped    --Start-->                     running (primary, or replica if standby.signal)
//	running    --Stop(fast|smart|immediate)-> stopped
//	replica    --Promote-->                   primary (new timeline)
//	any        --ConfigureStandby(upstream)-> standby.signal + recovery settings (a running
//	                                          replica reloads; a primary needs a restart)
//	stopped, diverged --Rewind(new primary)-->   stopped, ready for ConfigureStandby + Start
//	stopped, crashed as primary --CrashRecovery--> stopped, clean
//	running    --(postmaster dies)-->         stopped; an ExitEvent on Exits()
//
// Start launches the postmaster as a child of this process in its own
// process group and returns once postmaster.pid says it accepts
// connections. A goroutine waits on the child, so a crash is reported on
// [Instance.Exits] the moment the process is gone, with its exit status and
// the server log's tail. A postmaster that was already running when the
// Instance was created (the agent restarted) is adopted on first use and
// watched through a pidfd. [Instance.Running] checks the process itself,
// not only postmaster.pid. Stop signals the postmaster (SIGTERM, SIGINT or
// SIGQUIT, as pg_ctl does) and waits for it to exit; Promote calls
// pg_promote and polls until the server is out of recovery.
//
// [Instance.Status] gives the role, timeline, system identifier and LSNs of
// a running server in one query, and pg_controldata's view ([ControlData]:
// cluster state, checkpoint LSN, timeline, wal_log_hints, checksums) of a
// stopped one. LSNs are byte positions ([LSN]); LSN.String prints the
// familiar X/X form.
//
// Operations that change the instance run one at a time; Stop is the
// exception and may interrupt a Start or a Promote, so a fence never waits
// behind a slow operation. Close stops the pidfd watchers; it does not stop
// Postgres.
//
// # Errors
//
// Failures carry what a person needs to act:
//   - *[CommandError]: a program or the postmaster failed or timed out. It has
//     the command line (never a password), exit code, stderr tail, the server
//     log's tail for this attempt, a Detail line and a Cause.
//   - *[DirError]: a path check failed before anything ran (data directory
//     missing, not empty, other major version, wrong owner, unreachable).
//   - *[MissingBinaryError]: a program is not installed where pgha looked.
//   - *[ConfigError]: a configuration problem; [Config.Validate] joins all
//     of them.
//
// Causes are sentinels for errors.Is: [ErrPortInUse], [ErrInvalidParameter],
// [ErrCorruptDataDir], [ErrNotInitialized], [ErrDataDirNotEmpty],
// [ErrVersionMismatch], [ErrRewindNotPossible], [ErrPermission],
// [ErrTimeout], [ErrNotRunning], [ErrAlreadyRunning], [ErrClosed].
// [Retryable] tells the transient ones (timeout, port in use, not running)
// from those that need a change first. When the postmaster exits during
// Start, pgha finds the cause by probing the port, reading the server log
// for PostgreSQL's (English) messages about parameters, and running
// pg_controldata; with lc_messages in another language the cause may stay
// nil, but the log tail is always in the error. A timed-out Start or Stop
// leaves Postgres as it is and says so.
//
// # Running as root
//
// PostgreSQL refuses to run as root. When this process's effective uid is
// 0, every PostgreSQL program pgha runs (postgres, initdb, pg_basebackup,
// pg_rewind, pg_controldata) runs as Config.OSUser (default "postgres")
// through the credentials of the child process, with that user's HOME and
// without PG* environment variables. The data directory is created owned by
// that user with mode 0700 (Start refuses a data directory owned by
// someone else, and tightens a looser mode to 0700), the socket directory
// likewise when pgha creates it, the password file with mode 0600, and the
// configuration files pgha writes are given to that user. pgha never
// changes the directories above these: it checks that the OS user can
// traverse every parent and, if not, fails with a *DirError naming the
// directory (for example a 0700 home directory). The server log file is
// opened by pgha and handed to postgres as its stdout and stderr. When the
// process is not root, everything runs as the current user and OSUser must
// be empty or name that user.
//
// # Guarantees and limits
//
// pg reports what it observes and does what it is asked; it does not
// prevent two primaries (that is the job of the ha package's leader lease
// and fence). Parameters changed with ALTER SYSTEM (postgresql.auto.conf)
// still override pgha.conf, except for the protected ones on the command
// line. The server log file is appended to and never rotated; turn on
// logging_collector for rotation.
package pg
