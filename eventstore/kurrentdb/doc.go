// Package kurrentdb is a Cairn event store on KurrentDB (formerly
// EventStoreDB), through the KurrentDB Go client
// (github.com/kurrent-io/KurrentDB-Client-Go). A Store implements
// eventstore.Store, eventstore.SnapshotStore and eventstore.Notifier.
//
//	import kdb "github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"
//
//	conf, err := kdb.ParseConnectionString("kurrentdb://127.0.0.1:2113?tls=false")
//	...
//	client, err := kdb.NewClient(conf)
//	...
//	defer client.Close()
//	store, err := kurrentdb.New(client, kurrentdb.Config{})
//	...
//	defer store.Close()
//
// # Verification
//
// On Cairn's machines the adapter is verified against an in-process
// stand-in of the KurrentDB protocol only (package kurrentdbtest), built on
// the client module's own generated gRPC services; no real KurrentDB
// server runs there. The same tests run against a real server when
// KURRENTDB_URL is set, but that has not been done as part of this
// package's own verification.
//
// # Mapping
//
// A Cairn stream is the KurrentDB stream of the same name (after
// Config.StreamPrefix). Versions are revisions plus one: Exact(n) appends
// at revision n-1, NoStream, StreamExists and Any are KurrentDB's own
// expectations. A Position is the event's $all position: Tx is the commit
// position and Seq the prepare position, so positions sort as $all does and
// travel as the token "commit.prepare". An event is written as JSON data
// in PostgreSQL's jsonb form (so every store gives back the same bytes)
// with JSON metadata holding the correlation, causation and command IDs,
// the schema version and the free-form metadata; the event ID is the
// KurrentDB event ID. RecordedAt is the server's "created" time, in whole
// microseconds. KurrentDB has no field for when an event occurred: a given
// Event.OccurredAt travels in the metadata JSON under the store's reserved
// key "occurred_at" (beside, never inside, the caller's "extra") and is
// restored from there on read; without it OccurredAt reads as RecordedAt.
//
// The store's log is the streams whose names are valid Cairn stream IDs
// (after the prefix). System streams and events ($...) and the store's
// bookkeeping streams, whose names contain '/', which no Cairn stream ID
// may, are left out. ReadLog reads through a filtered catch-up
// subscription to $all, since that is where the client exposes the
// protocol's server-side filter: categories are sent as a stream-name
// expression, or else types as an event-type expression; when both are
// given, types are checked on the client. The read ends at the limit or at
// the server's caught-up signal, which KurrentDB sends on catch-up
// subscriptions. Head reads $all backwards to the first event of the log.
//
// The store does not implement eventstore.EventReader (KurrentDB has no
// index by event ID, so a read by ID would scan $all), and it refuses
// ReadLogOptions.Since with an *eventstore.UnsupportedOptionError (it has
// no index by time either) rather than scan or ignore it.
//
// Subscribe returns eventstore's generic subscription, whose every batch is
// a ReadLog and whose wait is woken by this store's own appends and by one
// live $all subscription per Store (see Store.Changes), which hears every
// other writer. Turning a client-side SubscribeToAll into an
// eventstore.Subscription directly would read ahead of the subscriber and
// keep two code paths for catch-up; this way nothing is read before
// NextBatch asks for it, and a dropped live subscription costs only a
// wake-up, not an event.
//
// Snapshots are events of a stream of their own per aggregate,
// "cairn/snapshots/<prefix><stream>", created with $maxCount set to
// Config.SnapshotsKept; LoadSnapshot reads its last event.
//
// # Command idempotency
//
// KurrentDB has no transaction spanning two streams, so the events of a
// command and its record cannot be written together. Append with
// eventstore.WithCommand does this instead:
//
//  1. It looks the command up in its record stream
//     "cairn/commands/<prefix><sha256 of the command ID>"; if it is
//     there, it returns the recorded result (or IdempotencyKeyReused).
//  2. It gives every event without an ID the ID CommandEventID(command
//     ID, stream, index). Aggregates leave event IDs zero, so a command
//     handled again produces the same IDs.
//  3. It appends the events at the expected revision. KurrentDB answers an
//     append whose event IDs are already at exactly those revisions (or,
//     for Any and StreamExists, among the stream's recent events) with the
//     original result instead of writing again; the store returns that
//     result marked Duplicate.
//  4. It writes the record, whose event ID is derived from the command
//     ID, expecting no stream: the first record wins.
//
// What is promised: a command whose append returned success is recorded,
// and every later append carrying its ID writes nothing and returns the
// first result. If the process stops, or the connection fails, between
// steps 3 and 4, HandledCommand does not know the command yet; a retry of
// the command that produces the same events at the same expected version
// (the normal retry of a command handler that reloads nothing in between,
// or of a client that resends after a lost answer) writes nothing, returns
// the original result marked Duplicate and records the command. With an
// exact expected version (what aggregates use), a retry whose events differ
// (other IDs) conflicts instead of writing twice. Not promised: a retry
// that reloads the aggregate first sees the leftover events and decides
// afresh at the newer version, so whether it emits again is the domain's
// decision; and with Any, events with other IDs are written again.
// Concurrent appends of one command at one expected version write the
// events once, but more than one of them may report Duplicate false.
//
// Event IDs are unique per stream only: KurrentDB keeps no index by event
// ID, so an event ID already used in another stream is written again
// (the acceptance suite's IdempotentEventIDs/OtherStream cases are
// therefore not run against this store).
//
//	                             PostgreSQL store                     KurrentDB store
//	command record and events    one transaction                      two appends: events, then record
//	crash between the two        cannot happen                        events without record; a retry with
//	                                                                  the same events repairs it
//	HandledCommand after success always true                          true once step 4 has run (before
//	                                                                  Append returns success)
//	retry, same command ID       recorded result, nothing written     same
//	same ID, other payload       IdempotencyKeyReused                 same (once recorded)
//	same ID, other stream        recorded result                      same (once recorded)
//	failed append                nothing recorded                     same
//	concurrent same command      one writes, others see the record    events written once; Duplicate may
//	                                                                  be false for more than one caller
//	event ID in another stream   DuplicateEventError                  written again (no global index)
//	repeat with Any              original result (every ID in stream) original result if the server still
//	                                                                  remembers the IDs (recent events)
//	empty append with command    expected version checked, recorded   same, the check is a read
//
// # Costs
//
// An append reads the stream's last revision first (to tell KurrentDB's
// idempotent answer from a fresh write, which look alike) and, with a
// command, reads and writes the record stream: two or four round trips. A
// ReadLog is a subscription from the given position; a filter that keeps
// few events makes the server scan the rest. Head scans backwards past
// events outside the store's log, so in a server shared with much other
// traffic (or namespaces) it costs what lies after the store's last event.
package kurrentdb
