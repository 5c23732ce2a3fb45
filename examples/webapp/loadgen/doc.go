// Package loadgen is the load loop of the webapp example (go run
// ./examples/webapp/load): workers that each write a note (POST /notes,
// with an Idempotency-Key) and read it back (GET /notes/{id}, carrying the
// read-your-writes cookie the write set), for a while, and a [Report]: how
// many requests succeeded and failed, on which primary the writes landed, and
// the latency percentiles of writes and reads.
//
// A request fails when it gets no answer, an unexpected status, or (for a
// read) not the note just written: a read-your-writes violation counts as a
// failure. Stopping (ctx ending or Config.Duration passing) lets each worker
// finish the requests it has in flight, which run under their own timeout,
// so stopping never turns a request into a failure.
package loadgen
