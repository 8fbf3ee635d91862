package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cairn-es/cairn/projection"
)

// commandNamespace roots the derived IDs of the commands sagas send.
var commandNamespace = uuid.MustParse("6f1b9a52-4c43-4d8e-9a57-0c9f3e1f7a21")

// commandID derives the ID of the index-th command a handling of cause
// (an event ID, a timeout, a rejected command) decided for an instance: the
// same message handled again decides the same IDs.
func commandID(sagaName, instanceID, cause string, index int) string {
	return uuid.NewSHA1(commandNamespace, []byte(sagaName+"\x00"+instanceID+"\x00"+cause+"\x00"+strconv.Itoa(index))).String()
}

// queries are the manager's SQL, qualified with the store's schema.
type queries struct {
	channel                                                                      string
	load, save, enqueueSQL, schedule, cancel, dropTimeouts, notify               string
	withdraw, scheduleAfterSend, renew, backlog, markRetryUncounted              string
	claim, markSent, markRetry, markDone, failInstance, dueTimeouts, fireTimeout string
	nextDue, postponeTimeout                                                     string
}

func newQueries(schema string) queries {
	s := pgx.Identifier{schema}.Sanitize()
	r := strings.NewReplacer("{s}", s)
	return queries{
		channel: "cairn_sagas_" + schema,
		load: r.Replace(`SELECT status, state, compensations, correlation_id FROM {s}.saga_instances
			WHERE saga = $1 AND instance_id = $2 FOR UPDATE`),
		save: r.Replace(`INSERT INTO {s}.saga_instances AS i (saga, instance_id, status, state, compensations, outcome, correlation_id, ended_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $3 = 'active' THEN NULL ELSE now() END)
			ON CONFLICT (saga, instance_id) DO UPDATE SET status = $3, state = $4, compensations = $5,
				outcome = $6, version = i.version + 1, updated_at = now(),
				ended_at = CASE WHEN $3 = 'active' THEN NULL ELSE now() END`),
		enqueueSQL: r.Replace(`INSERT INTO {s}.saga_outbox (saga, instance_id, command_id, command_type, payload, correlation_id, causation_id, withdrawable, trace_context, grp)
			SELECT $1, $2, c.id, c.type, c.payload, $3, $4, c.withdrawable, $9::jsonb, c.grp
			FROM unnest($5::text[], $6::text[], $7::jsonb[], $8::boolean[], $10::text[]) WITH ORDINALITY AS c(id, type, payload, withdrawable, grp, n)
			ORDER BY c.n
			ON CONFLICT (command_id) DO NOTHING`),
		// withdraw takes back the instance's unsent commands when it ends
		// or compensates. Only commands never tried: one a relay has taken
		// (attempts counts the claims; a send that failed because the
		// database was away gives its attempt back but leaves its error)
		// may have taken effect, and goes on until its answer is known.
		// withdraw also drops the deadlines the withdrawn commands would
		// have started, and returns the commands, in the order queued.
		withdraw: r.Replace(`WITH w AS (
				UPDATE {s}.saga_outbox SET status = 'withdrawn', done_at = now(), claimed_until = NULL
				WHERE saga = $1 AND instance_id = $2 AND status = 'pending' AND withdrawable
				  AND attempts = 0 AND error IS NULL
				RETURNING id, command_id, command_type, payload),
			gone AS (
				DELETE FROM {s}.saga_timeouts t USING w
				WHERE t.saga = $1 AND t.instance_id = $2 AND t.after_command_id = w.command_id AND t.due_at IS NULL)
			SELECT command_id, command_type, payload FROM w ORDER BY id`),
		schedule: r.Replace(`INSERT INTO {s}.saga_timeouts (saga, instance_id, name, due_at)
			VALUES ($1, $2, $3, now() + $4 * interval '1 microsecond')
			ON CONFLICT (saga, instance_id, name) DO UPDATE SET due_at = EXCLUDED.due_at,
				after_command_id = NULL, delay_us = NULL`),
		// scheduleAfterSend sets a deadline whose clock starts when the
		// command is sent: due_at stays NULL until the relay claims it.
		scheduleAfterSend: r.Replace(`INSERT INTO {s}.saga_timeouts (saga, instance_id, name, due_at, after_command_id, delay_us)
			VALUES ($1, $2, $3, NULL, $4, $5)
			ON CONFLICT (saga, instance_id, name) DO UPDATE SET due_at = NULL,
				after_command_id = EXCLUDED.after_command_id, delay_us = EXCLUDED.delay_us`),
		// renew skips the rows locked meanwhile (being marked sent, or
		// recorded): they need no renewal, and waiting on them, locking
		// in another order than the mark, deadlocked.
		renew: r.Replace(`UPDATE {s}.saga_outbox SET claimed_until = now() + $2 * interval '1 microsecond'
			WHERE id IN (SELECT id FROM {s}.saga_outbox WHERE id = ANY($1) AND status = 'pending'
				ORDER BY id FOR UPDATE SKIP LOCKED)`),
		// backlog measures the relay's queue: how many commands wait to be
		// sent now, and how long the longest has waited since it became
		// sendable (queued, or due for a retry). Commands being sent and
		// commands waiting out a retry's backoff are not waiting on us.
		backlog: r.Replace(`SELECT count(*), coalesce(extract(epoch FROM now() - min(next_attempt_at)), 0)
			FROM {s}.saga_outbox
			WHERE status = 'pending' AND next_attempt_at <= now() AND saga = ANY($1)
			  AND (claimed_until IS NULL OR claimed_until < now())`),
		cancel:       r.Replace(`DELETE FROM {s}.saga_timeouts WHERE saga = $1 AND instance_id = $2 AND name = $3`),
		dropTimeouts: r.Replace(`DELETE FROM {s}.saga_timeouts WHERE saga = $1 AND instance_id = $2`),
		notify:       `SELECT pg_notify($1, $2)`,
		// claim leases the oldest sendable command of each instance: an
		// instance's later commands wait until the earlier ones are done
		// (sent, rejected, dead or withdrawn), so they are sent in order,
		// one at a time, and a dead one does not hold back the
		// compensations after it. A group (grp, see Concurrent) is the
		// exception: its sendable commands are leased together once its
		// first one is the oldest, and what follows waits for all of them.
		// Claiming a command is sending it: the clocks of the deadlines
		// counted from its send (saga.Deadline) start (again, on a retry)
		// in the same statement.
		claim: r.Replace(`WITH claimed AS (
				UPDATE {s}.saga_outbox o SET claimed_until = now() + $3 * interval '1 microsecond', attempts = o.attempts + 1
				WHERE o.id IN (
					SELECT p.id FROM (
						-- The head of each instance's queue, in one ordered
						-- scan of the pending index: no per-row look-up whose
						-- plan goes wrong when the table's statistics lag.
						SELECT DISTINCT ON (h.saga, h.instance_id) h.id, h.grp
						FROM {s}.saga_outbox h
						WHERE h.status = 'pending' AND h.saga = ANY($1)
						ORDER BY h.saga, h.instance_id, h.id) head
					-- The head, and the other pending members of its group:
					-- two index look-ups, however long the instance's queue.
					CROSS JOIN LATERAL (
						SELECT head.id AS id
						UNION ALL
						SELECT g.id FROM {s}.saga_outbox g
						WHERE head.grp IS NOT NULL AND g.grp = head.grp AND g.status = 'pending' AND g.id <> head.id) m
					JOIN {s}.saga_outbox p ON p.id = m.id
					-- Checked on p after its lock is taken: a row another
					-- relay claimed meanwhile is re-checked against these.
					WHERE p.status = 'pending' AND p.next_attempt_at <= now()
					  AND (p.claimed_until IS NULL OR p.claimed_until < now())
					ORDER BY p.id LIMIT $2
					FOR UPDATE OF p SKIP LOCKED)
				RETURNING o.id, o.saga, o.instance_id, o.command_id, o.command_type, o.payload, o.correlation_id, o.causation_id, o.attempts, o.trace_context),
			started AS (
				UPDATE {s}.saga_timeouts t SET due_at = now() + t.delay_us * interval '1 microsecond'
				FROM claimed c WHERE t.saga = c.saga AND t.instance_id = c.instance_id AND t.after_command_id = c.command_id)
			SELECT * FROM claimed`),
		markSent: r.Replace(`UPDATE {s}.saga_outbox SET status = 'sent', done_at = now(), claimed_until = NULL, error = NULL WHERE id = ANY($1)`),
		// A failed send is released for another attempt. A command being
		// sent when its instance ended is not withdrawn, even if that
		// attempt failed: it may have taken effect, and only its answer
		// (a resend, which the command log dedups) tells.
		markRetry: r.Replace(`UPDATE {s}.saga_outbox SET next_attempt_at = now() + $2 * interval '1 microsecond', claimed_until = NULL, error = $3
			WHERE id = $1 AND status = 'pending'`),
		markRetryUncounted: r.Replace(`UPDATE {s}.saga_outbox SET next_attempt_at = now() + $2 * interval '1 microsecond', claimed_until = NULL, error = $3,
				attempts = greatest(attempts - 1, 0) WHERE id = $1 AND status = 'pending'`),
		markDone: r.Replace(`UPDATE {s}.saga_outbox SET status = $2, done_at = now(), claimed_until = NULL, error = $3 WHERE id = $1 AND status = 'pending'`),
		failInstance: r.Replace(`UPDATE {s}.saga_instances SET status = 'failed', outcome = $3, updated_at = now(),
				ended_at = coalesce(ended_at, now()), version = version + 1
			WHERE saga = $1 AND instance_id = $2 AND status <> 'failed'`),
		// dueTimeouts takes the due timeouts of each saga that are due
		// before the oldest event the saga has not handled yet ($3, see
		// unhandledSince): such an event may answer what the timeout waits
		// for, so the timeout waits for the saga to catch up.
		dueTimeouts: r.Replace(`SELECT t.saga, t.instance_id, t.name, t.due_at FROM {s}.saga_timeouts t
			JOIN unnest($1::text[], $3::timestamptz[]) AS h(saga, until) ON h.saga = t.saga
			WHERE t.due_at <= now() AND t.due_at < h.until ORDER BY t.due_at LIMIT $2`),
		fireTimeout: r.Replace(`DELETE FROM {s}.saga_timeouts WHERE saga = $1 AND instance_id = $2 AND name = $3 AND due_at = $4 AND due_at <= now()
			RETURNING now()`),
		postponeTimeout: r.Replace(`UPDATE {s}.saga_timeouts SET due_at = now() + $5 * interval '1 microsecond'
			WHERE saga = $1 AND instance_id = $2 AND name = $3 AND due_at = $4`),
		nextDue: r.Replace(`SELECT extract(epoch FROM min(due_at) - now()) FROM {s}.saga_timeouts WHERE saga = ANY($1)`),
	}
}

// loadInstance reads and locks an instance: everything an instance
// handles takes this lock first, so its messages are handled one at a time
// and no two transactions lock in different orders.
func (q *queries) loadInstance(ctx context.Context, w *projection.Queue, sagaName, id string) (*instance, error) {
	inst := &instance{id: id}
	tx, err := w.Tx(ctx)
	if err != nil {
		return nil, err
	}
	var comps []byte
	err = tx.QueryRow(ctx, q.load, sagaName, id).Scan(&inst.status, &inst.state, &comps, &inst.correlationID)
	if errors.Is(err, pgx.ErrNoRows) {
		return inst, nil
	}
	if err != nil {
		return nil, fmt.Errorf("saga %s: loading instance %s: %w", sagaName, id, err)
	}
	inst.exists = true
	if err := json.Unmarshal(comps, &inst.compensations); err != nil {
		return nil, fmt.Errorf("saga %s: instance %s: decoding its compensations: %w", sagaName, id, err)
	}
	return inst, nil
}

// withdrawnCommand is a command withdrawn from the outbox.
type withdrawnCommand struct {
	id, typ string
	payload []byte
}

// persist writes what a handling decided, in the handling's transaction,
// through w: the projection's Queue (pipelined when the daemon applies
// several events at once), or Direct over the relay's or timer's own.
// cause names the message (see commandID); causationID is what the sent
// commands name as their cause. It returns the commands queued earlier
// that the handling withdrew (see Context.Send).
func (q *queries) persist(ctx context.Context, w *projection.Queue, sagaName string, inst *instance, fx *effects, cause, causationID string) ([]withdrawnCommand, error) {
	comps, err := json.Marshal(fx.compensations)
	if err != nil {
		return nil, err
	}
	if fx.compensations == nil {
		comps = []byte("[]")
	}
	if err := w.Exec(ctx, q.save, sagaName, inst.id, fx.status, []byte(fx.state), comps, fx.outcome, inst.correlationID); err != nil {
		return nil, fmt.Errorf("saga %s: saving instance %s: %w", sagaName, inst.id, err)
	}
	var withdrawn []withdrawnCommand
	if fx.withdraws() {
		// Before queueing this handling's own commands, which go out.
		tx, err := w.Tx(ctx)
		if err != nil {
			return nil, err
		}
		rows, _ := tx.Query(ctx, q.withdraw, sagaName, inst.id)
		withdrawn, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (withdrawnCommand, error) {
			var w withdrawnCommand
			return w, row.Scan(&w.id, &w.typ, &w.payload)
		})
		if err != nil {
			return nil, fmt.Errorf("saga %s: withdrawing the unsent commands of instance %s: %w", sagaName, inst.id, err)
		}
	}
	wake := false
	if len(fx.sends) > 0 {
		if err := q.enqueue(ctx, w, sagaName, inst, fx, cause, causationID); err != nil {
			return nil, err
		}
		wake = true
	}
	if fx.status != StatusActive {
		if err := w.Exec(ctx, q.dropTimeouts, sagaName, inst.id); err != nil {
			return nil, err
		}
	} else {
		for name := range fx.cancel {
			if err := w.Exec(ctx, q.cancel, sagaName, inst.id, name); err != nil {
				return nil, err
			}
		}
		for name, after := range fx.schedule {
			if err := w.Exec(ctx, q.schedule, sagaName, inst.id, name, after.Microseconds()); err != nil {
				return nil, err
			}
			wake = true
		}
		for i, c := range fx.sends {
			if c.deadline == nil {
				continue
			}
			id := commandID(sagaName, inst.id, cause, i)
			if err := w.Exec(ctx, q.scheduleAfterSend, sagaName, inst.id, c.deadline.name, id, c.deadline.after.Microseconds()); err != nil {
				return nil, err
			}
		}
	}
	if wake {
		if err := w.Exec(ctx, q.notify, q.channel, sagaName); err != nil {
			return nil, err
		}
	}
	return withdrawn, nil
}

// groups names the group (see Concurrent) of each command a handling
// queued: the ID of the group's first command, for every command of a group
// of two or more; nil (sent on its own) for the rest.
func groups(sends []queuedCommand, ids []string) []*string {
	grp := make([]*string, len(sends))
	for i := 1; i < len(sends); i++ {
		// Compensations are undone one at a time: never grouped, neither
		// with what comes before them nor with what follows.
		if !sends[i].concurrent || sends[i].compensation || sends[i-1].compensation {
			continue
		}
		if grp[i-1] == nil {
			grp[i-1] = &ids[i-1]
		}
		grp[i] = grp[i-1]
	}
	return grp
}

// enqueue queues the commands a handling decided, in order, under IDs
// derived from cause, with the handling's trace context (the span in ctx),
// under which the relay sends them.
func (q *queries) enqueue(ctx context.Context, w *projection.Queue, sagaName string, inst *instance, fx *effects, cause, causationID string) error {
	n := len(fx.sends)
	ids, types, payloads := make([]string, n), make([]string, n), make([]string, n)
	withdrawable := make([]bool, n)
	for i, c := range fx.sends {
		ids[i] = commandID(sagaName, inst.id, cause, i)
		types[i], payloads[i], withdrawable[i] = c.Type, string(c.Payload), c.withdrawable
	}
	if err := w.Exec(ctx, q.enqueueSQL, sagaName, inst.id, inst.correlationID, causationID, ids, types, payloads, withdrawable, traceContextArg(ctx), groups(fx.sends, ids)); err != nil {
		return fmt.Errorf("saga %s: queueing commands of instance %s: %w", sagaName, inst.id, err)
	}
	return nil
}
