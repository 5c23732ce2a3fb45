// Package notes is the HTTP service of the webapp example: a small JSON API
// over a PostgreSQL cluster reached through a [routing.Router], written the
// way an application should use the router.
//
//	POST /notes        {"text": "..."}  -> 201 {"id", "text", "created_at"}
//	GET  /notes/{id}                    -> 200 {"id", "text", "created_at"} or 404
//	GET  /notes?limit=N                 -> 200 [{...}, ...] (newest first)
//	GET  /topology                      -> 200 the router's view of the cluster
//	GET  /healthz                       -> 200 while the process runs
//	GET  /readyz                        -> 200 when a primary is known and the service is not shutting down
//
// Writes go through Router.Write, so they reach the current primary and are
// retried on the new one when a failover or switchover cuts them before
// COMMIT. A write that carries an Idempotency-Key header is also retried
// when the COMMIT itself was cut (routing.ErrAmbiguousCommit): the key makes
// the insert idempotent, so running it again cannot store the note twice.
// Without a key such a write answers 500 with "commit outcome unknown".
//
// Reads go through Router.Read to a replica within the router's lag bound.
// Read-your-writes: every write answers with its commit's WAL position in
// the Pgha-LSN header and a pgha_lsn cookie; a read that carries either
// (the header wins) goes to a node that has replayed it, so a client always
// sees its own writes, even on a replica, even across a switchover.
//
// Every answer that touched the database names the member that served it in
// the Pgha-Node header. While no primary can be reached (a failover in
// progress) requests wait, up to the request's deadline (Config.Timeout),
// then answer 503 with Retry-After.
//
// [Service.Shutdown] turns /readyz to 503 so a load balancer stops sending
// traffic, before the HTTP server drains.
package notes
