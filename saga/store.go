package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
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
	load, save, enqueue, schedule, cancel, dropTimeouts, notify                  string
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
		enqueue: r.Replace(`INSERT INTO {s}.saga_outbox (saga, instance_id, command_id, command_type, payload, correlation_id, causation_id)
			SELECT $1, $2, c.id, c.type, c.payload, $3, $4
			FROM unnest($5::text[], $6::text[], $7::jsonb[]) WITH ORDINALITY AS c(id, type, payload, n)
			ORDER BY c.n
			ON CONFLICT (command_id) DO NOTHING`),
		schedule: r.Replace(`INSERT INTO {s}.saga_timeouts (saga, instance_id, name, due_at)
			VALUES ($1, $2, $3, now() + $4 * interval '1 microsecond')
			ON CONFLICT (saga, instance_id, name) DO UPDATE SET due_at = EXCLUDED.due_at`),
		cancel:       r.Replace(`DELETE FROM {s}.saga_timeouts WHERE saga = $1 AND instance_id = $2 AND name = $3`),
		dropTimeouts: r.Replace(`DELETE FROM {s}.saga_timeouts WHERE saga = $1 AND instance_id = $2`),
		notify:       `SELECT pg_notify($1, $2)`,
		// claim leases the oldest sendable command of each instance: an
		// instance's later commands wait until the earlier ones are done
		// (sent, rejected or dead), so they are sent in order, one at a
		// time, and a dead one does not hold back the compensations after
		// it.
		claim: r.Replace(`UPDATE {s}.saga_outbox o SET claimed_until = now() + $3 * interval '1 microsecond', attempts = o.attempts + 1
			WHERE o.id IN (
				SELECT p.id FROM {s}.saga_outbox p
				WHERE p.status = 'pending' AND p.next_attempt_at <= now()
				  AND (p.claimed_until IS NULL OR p.claimed_until < now())
				  AND p.saga = ANY($1)
				  AND NOT EXISTS (SELECT 1 FROM {s}.saga_outbox q
					WHERE q.saga = p.saga AND q.instance_id = p.instance_id
					  AND q.status = 'pending' AND q.id < p.id)
				ORDER BY p.id LIMIT $2
				FOR UPDATE SKIP LOCKED)
			RETURNING o.id, o.saga, o.instance_id, o.command_id, o.command_type, o.payload, o.correlation_id, o.causation_id, o.attempts`),
		markSent:  r.Replace(`UPDATE {s}.saga_outbox SET status = 'sent', done_at = now(), claimed_until = NULL, error = NULL WHERE id = $1`),
		markRetry: r.Replace(`UPDATE {s}.saga_outbox SET next_attempt_at = now() + $2 * interval '1 microsecond', claimed_until = NULL, error = $3 WHERE id = $1 AND status = 'pending'`),
		markDone:  r.Replace(`UPDATE {s}.saga_outbox SET status = $2, done_at = now(), claimed_until = NULL, error = $3 WHERE id = $1 AND status = 'pending'`),
		failInstance: r.Replace(`UPDATE {s}.saga_instances SET status = 'failed', outcome = $3, updated_at = now(),
				ended_at = coalesce(ended_at, now()), version = version + 1
			WHERE saga = $1 AND instance_id = $2 AND status <> 'failed'`),
		dueTimeouts: r.Replace(`SELECT saga, instance_id, name, due_at FROM {s}.saga_timeouts
			WHERE due_at <= now() AND saga = ANY($1) ORDER BY due_at LIMIT $2`),
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
func (q *queries) loadInstance(ctx context.Context, tx pgx.Tx, sagaName, id string) (*instance, error) {
	inst := &instance{id: id}
	var comps []byte
	err := tx.QueryRow(ctx, q.load, sagaName, id).Scan(&inst.status, &inst.state, &comps, &inst.correlationID)
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

// persist writes what a handling decided, in the handling's transaction.
// cause names the message (see commandID); causationID is what the sent
// commands name as their cause. It reports whether anything was queued for
// the relay or the timer.
func (q *queries) persist(ctx context.Context, tx pgx.Tx, sagaName string, inst *instance, fx *effects, cause, causationID string) (bool, error) {
	comps, err := json.Marshal(fx.compensations)
	if err != nil {
		return false, err
	}
	if fx.compensations == nil {
		comps = []byte("[]")
	}
	if _, err := tx.Exec(ctx, q.save, sagaName, inst.id, fx.status, []byte(fx.state), comps, fx.outcome, inst.correlationID); err != nil {
		return false, fmt.Errorf("saga %s: saving instance %s: %w", sagaName, inst.id, err)
	}
	wake := false
	if len(fx.sends) > 0 {
		ids := make([]string, len(fx.sends))
		types := make([]string, len(fx.sends))
		payloads := make([]string, len(fx.sends))
		for i, c := range fx.sends {
			ids[i] = commandID(sagaName, inst.id, cause, i)
			types[i] = c.Type
			payloads[i] = string(c.Payload)
		}
		if _, err := tx.Exec(ctx, q.enqueue, sagaName, inst.id, inst.correlationID, causationID, ids, types, payloads); err != nil {
			return false, fmt.Errorf("saga %s: queueing commands of instance %s: %w", sagaName, inst.id, err)
		}
		wake = true
	}
	if fx.status != StatusActive {
		if _, err := tx.Exec(ctx, q.dropTimeouts, sagaName, inst.id); err != nil {
			return false, err
		}
	} else {
		for name := range fx.cancel {
			if _, err := tx.Exec(ctx, q.cancel, sagaName, inst.id, name); err != nil {
				return false, err
			}
		}
		for name, after := range fx.schedule {
			if _, err := tx.Exec(ctx, q.schedule, sagaName, inst.id, name, after.Microseconds()); err != nil {
				return false, err
			}
			wake = true
		}
	}
	if wake {
		if _, err := tx.Exec(ctx, q.notify, q.channel, sagaName); err != nil {
			return false, err
		}
	}
	return wake, nil
}

// backoff is the delay before attempt n+1 of a failing command: exponential
// from base, capped, with full jitter in its upper half so that commands
// failing together do not retry together.
func backoff(attempt int, base, max time.Duration, rnd func(int64) int64) time.Duration {
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	half := int64(d / 2)
	if half <= 0 {
		return d
	}
	return time.Duration(half + rnd(half+1))
}
