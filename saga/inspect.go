package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cairn-es/cairn/migrations"
	"github.com/cairn-es/cairn/pgdb"
)

// ErrInstanceNotFound: no saga instance has the ID asked for.
var ErrInstanceNotFound = errors.New("saga: instance not found")

// Inspector reads saga instances for operators (the CLI's saga list and
// saga show, the metrics). It needs no saga code.
type Inspector struct {
	pool   *pgxpool.Pool
	schema string
}

// NewInspector returns an inspector of the sagas whose tables are in db
// (the projection Manager's pgdb.DB; an empty Schema is
// migrations.DefaultSchema).
func NewInspector(db pgdb.DB) *Inspector {
	if db.Schema == "" {
		db.Schema = migrations.DefaultSchema
	}
	return &Inspector{pool: db.Pool, schema: db.Ident()}
}

func (i *Inspector) sql(q string) string { return strings.ReplaceAll(q, "{s}", i.schema) }

// Instance is a saga instance as operators see it.
type Instance struct {
	Saga          string          `json:"saga"`
	ID            string          `json:"id"`
	Status        string          `json:"status"`
	Outcome       string          `json:"outcome,omitempty"`
	CorrelationID string          `json:"correlation_id"`
	State         json.RawMessage `json:"state"`
	Compensations int             `json:"compensations"`
	Version       int64           `json:"version"`
	StartedAt     time.Time       `json:"started_at"`
	UpdatedAt     time.Time       `json:"updated_at"`
	EndedAt       *time.Time      `json:"ended_at,omitempty"`
	// PendingCommands and DeadCommands count the instance's outbox.
	PendingCommands int `json:"pending_commands"`
	DeadCommands    int `json:"dead_commands"`
}

// ListOptions filter List.
type ListOptions struct {
	Saga   string // "" for every saga
	Status string // "" for every status
	Limit  int    // default 50
}

// List returns instances, most recently updated first.
func (i *Inspector) List(ctx context.Context, opts ListOptions) ([]Instance, error) {
	if opts.Limit <= 0 {
		opts.Limit = 50
	}
	rows, err := i.pool.Query(ctx, i.sql(instanceSelect+`
		WHERE ($1 = '' OR i.saga = $1) AND ($2 = '' OR i.status = $2)
		ORDER BY i.updated_at DESC, i.saga, i.instance_id LIMIT $3`), opts.Saga, opts.Status, opts.Limit)
	if err != nil {
		return nil, fmt.Errorf("saga: listing instances: %w", err)
	}
	return pgx.CollectRows(rows, scanInstance)
}

const instanceSelect = `SELECT i.saga, i.instance_id, i.status, i.outcome, i.correlation_id, i.state,
		jsonb_array_length(i.compensations), i.version, i.started_at, i.updated_at, i.ended_at,
		(SELECT count(*) FROM {s}.saga_outbox o WHERE o.saga = i.saga AND o.instance_id = i.instance_id AND o.status = 'pending'),
		(SELECT count(*) FROM {s}.saga_outbox o WHERE o.saga = i.saga AND o.instance_id = i.instance_id AND o.status = 'dead')
	FROM {s}.saga_instances i`

func scanInstance(row pgx.CollectableRow) (Instance, error) {
	var in Instance
	err := row.Scan(&in.Saga, &in.ID, &in.Status, &in.Outcome, &in.CorrelationID, &in.State,
		&in.Compensations, &in.Version, &in.StartedAt, &in.UpdatedAt, &in.EndedAt, &in.PendingCommands, &in.DeadCommands)
	return in, err
}

// Command is a command an instance decided, with its delivery.
type Command struct {
	CommandID string          `json:"command_id"`
	Type      string          `json:"type"`
	Payload   json.RawMessage `json:"payload"`
	Status    string          `json:"status"`
	Attempts  int             `json:"attempts"`
	Error     string          `json:"error,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	DoneAt    *time.Time      `json:"done_at,omitempty"`
}

// Timeout is a scheduled timeout. A deadline counted from a command's
// send (saga.Deadline) has no DueAt until the command is sent; AfterCommand
// names that command and After the time it will run for.
type Timeout struct {
	Name         string        `json:"name"`
	DueAt        *time.Time    `json:"due_at"`
	AfterCommand string        `json:"after_command_id,omitempty"`
	After        time.Duration `json:"after,omitempty"`
}

// Detail is one instance with its commands and timeouts.
type Detail struct {
	Instance
	Commands []Command `json:"commands"`
	Timeouts []Timeout `json:"timeouts"`
}

// Show returns one instance. sagaName may be empty when only one saga has
// an instance with that ID; otherwise the error says which sagas do.
func (i *Inspector) Show(ctx context.Context, sagaName, id string) (Detail, error) {
	rows, err := i.pool.Query(ctx, i.sql(instanceSelect+` WHERE ($1 = '' OR i.saga = $1) AND i.instance_id = $2 ORDER BY i.saga`), sagaName, id)
	if err != nil {
		return Detail{}, fmt.Errorf("saga: reading instance %s: %w", id, err)
	}
	found, err := pgx.CollectRows(rows, scanInstance)
	if err != nil {
		return Detail{}, fmt.Errorf("saga: reading instance %s: %w", id, err)
	}
	switch len(found) {
	case 0:
		return Detail{}, fmt.Errorf("%w: %q", ErrInstanceNotFound, id)
	case 1:
	default:
		names := make([]string, len(found))
		for n, f := range found {
			names[n] = f.Saga
		}
		return Detail{}, fmt.Errorf("saga: instance %q exists in several sagas (%s): name one", id, strings.Join(names, ", "))
	}
	d := Detail{Instance: found[0], Commands: []Command{}, Timeouts: []Timeout{}}
	rows, err = i.pool.Query(ctx, i.sql(`SELECT command_id, command_type, payload, status, attempts, coalesce(error, ''), created_at, done_at
		FROM {s}.saga_outbox WHERE saga = $1 AND instance_id = $2 ORDER BY id`), d.Saga, id)
	if err != nil {
		return Detail{}, err
	}
	if d.Commands, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Command, error) {
		var c Command
		return c, row.Scan(&c.CommandID, &c.Type, &c.Payload, &c.Status, &c.Attempts, &c.Error, &c.CreatedAt, &c.DoneAt)
	}); err != nil {
		return Detail{}, err
	}
	rows, err = i.pool.Query(ctx, i.sql(`SELECT name, due_at, coalesce(after_command_id, ''), coalesce(delay_us, 0)
		FROM {s}.saga_timeouts WHERE saga = $1 AND instance_id = $2 ORDER BY due_at NULLS LAST, name`), d.Saga, id)
	if err != nil {
		return Detail{}, err
	}
	if d.Timeouts, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Timeout, error) {
		var t Timeout
		var us int64
		err := row.Scan(&t.Name, &t.DueAt, &t.AfterCommand, &us)
		t.After = time.Duration(us) * time.Microsecond
		return t, err
	}); err != nil {
		return Detail{}, err
	}
	return d, nil
}

// Stats summarises one saga.
type Stats struct {
	Saga                 string           `json:"saga"`
	Instances            map[string]int64 `json:"instances"` // by status
	Commands             map[string]int64 `json:"commands"`  // by outbox status
	OldestPendingSeconds float64          `json:"oldest_pending_seconds"`
	Timeouts             int64            `json:"timeouts"`
}

// Stats summarises the named sagas (every saga with instances when none
// is named).
func (i *Inspector) Stats(ctx context.Context, sagas ...string) ([]Stats, error) {
	byName := map[string]*Stats{}
	get := func(name string) *Stats {
		s, ok := byName[name]
		if !ok {
			s = &Stats{Saga: name, Instances: map[string]int64{}, Commands: map[string]int64{}}
			byName[name] = s
		}
		return s
	}
	for _, n := range sagas {
		s := get(n)
		for _, st := range []string{StatusActive, StatusCompleted, StatusFailed} {
			s.Instances[st] = 0
		}
		for _, st := range []string{"pending", "sent", "rejected", "dead"} {
			s.Commands[st] = 0
		}
	}
	all := len(sagas) == 0
	batch := &pgx.Batch{}
	batch.Queue(i.sql(`SELECT saga, status, count(*) FROM {s}.saga_instances WHERE $1 OR saga = ANY($2) GROUP BY 1, 2`), all, sagas).
		Fn = func(br pgx.BatchResults) error {
		rows, _ := br.Query()
		var saga, status string
		var n int64
		_, err := pgx.ForEachRow(rows, []any{&saga, &status, &n}, func() error { get(saga).Instances[status] = n; return nil })
		return err
	}
	batch.Queue(i.sql(`SELECT saga, status, count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
		FROM {s}.saga_outbox WHERE $1 OR saga = ANY($2) GROUP BY 1, 2`), all, sagas).
		Fn = func(br pgx.BatchResults) error {
		rows, _ := br.Query()
		var saga, status string
		var n int64
		var age float64
		_, err := pgx.ForEachRow(rows, []any{&saga, &status, &n, &age}, func() error {
			s := get(saga)
			s.Commands[status] = n
			if status == "pending" {
				s.OldestPendingSeconds = age
			}
			return nil
		})
		return err
	}
	batch.Queue(i.sql(`SELECT saga, count(*) FROM {s}.saga_timeouts WHERE $1 OR saga = ANY($2) GROUP BY 1`), all, sagas).
		Fn = func(br pgx.BatchResults) error {
		rows, _ := br.Query()
		var saga string
		var n int64
		_, err := pgx.ForEachRow(rows, []any{&saga, &n}, func() error { get(saga).Timeouts = n; return nil })
		return err
	}
	if err := i.pool.SendBatch(ctx, batch).Close(); err != nil {
		return nil, fmt.Errorf("saga: reading statistics: %w", err)
	}
	out := make([]Stats, 0, len(byName))
	for _, s := range byName {
		out = append(out, *s)
	}
	sortStats(out)
	return out, nil
}
