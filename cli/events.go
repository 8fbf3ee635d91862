package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/cairn-es/cairn/eventstore"
)

func (a *app) eventsCmd() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "events",
		Short: "Read the event log",
	})
	cmd.AddCommand(a.readCmd(), a.showCmd(), a.tailCmd())
	return cmd
}

// EventJSON is the JSON form of a recorded event that events read and
// events tail print, one per line, and events show prints alone.
// OccurredAt is always set: RecordedAt unless the event said otherwise.
type EventJSON struct {
	ID            uuid.UUID            `json:"id"`
	StreamID      string               `json:"stream_id"`
	Version       int64                `json:"version"`
	Position      eventstore.Position  `json:"position"`
	Type          string               `json:"type"`
	SchemaVersion int                  `json:"schema_version"`
	Data          json.RawMessage      `json:"data"`
	Metadata      *eventstore.Metadata `json:"metadata,omitempty"`
	RecordedAt    time.Time            `json:"recorded_at"`
	OccurredAt    time.Time            `json:"occurred_at"`
}

func eventJSON(e eventstore.RecordedEvent) EventJSON {
	out := EventJSON{ID: e.ID, StreamID: e.StreamID, Version: e.Version, Position: e.Position, Type: e.Type,
		SchemaVersion: max(e.SchemaVersion, 1), Data: e.Data, RecordedAt: e.RecordedAt, OccurredAt: e.OccurredAt}
	if out.OccurredAt.IsZero() {
		out.OccurredAt = e.RecordedAt
	}
	if m := e.Metadata; m.CorrelationID != "" || m.CausationID != "" || m.CommandID != "" || len(m.Extra) > 0 || len(m.Values) > 0 {
		out.Metadata = &m
	}
	if len(out.Data) == 0 {
		out.Data = json.RawMessage("null")
	}
	return out
}

// eventPrinter writes events as JSON Lines or as one line each for humans.
type eventPrinter struct {
	w      io.Writer
	asJSON bool
	enc    *json.Encoder
}

func newEventPrinter(w io.Writer, asJSON bool) *eventPrinter {
	return &eventPrinter{w: w, asJSON: asJSON, enc: json.NewEncoder(w)}
}

func (p *eventPrinter) print(e eventstore.RecordedEvent) error {
	if p.asJSON {
		return p.enc.Encode(eventJSON(e))
	}
	_, err := fmt.Fprintf(p.w, "%s  %s@%d  %s  %s  %s\n", e.Position, e.StreamID, e.Version,
		e.RecordedAt.Local().Format("2006-01-02 15:04:05.000"), typeName(e), compact(e.Data))
	return err
}

// typeName is the event's type, with its schema version when past 1.
func typeName(e eventstore.RecordedEvent) string {
	if e.SchemaVersion > 1 {
		return e.Type + "/v" + strconv.Itoa(e.SchemaVersion)
	}
	return e.Type
}

func compact(data []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		return string(data)
	}
	return b.String()
}

func (a *app) readCmd() *cobra.Command {
	var (
		asJSON, backward bool
		from             int64
		limit            int
		since            string
	)
	cmd := &cobra.Command{
		Use:   "read [STREAM]",
		Short: "Print a stream's events, or the log's",
		Long: "Print a stream's events, oldest first (newest first with --backward): position, stream@version,\n" +
			"time, type and data. Without STREAM, print the whole log in log order, up to its head when the\n" +
			"command starts (--from and --backward need a STREAM). --since TIME (RFC 3339, such as\n" +
			"2026-12-03T19:00:00Z) keeps the events recorded at or after TIME. --json prints one JSON object\n" +
			"per line (JSON Lines).",
		Args: nArgs(0, 1, "STREAM"),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if from < 0 || limit < 0 {
				return Usagef(cmd, "%s: --from and --limit must not be negative", cmd.CommandPath())
			}
			if len(args) == 0 && (from != 0 || backward) {
				return Usagef(cmd, "%s: --from and --backward need a STREAM", cmd.CommandPath())
			}
			var sinceTime time.Time
			if since != "" {
				var err error
				if sinceTime, err = time.Parse(time.RFC3339Nano, since); err != nil {
					return Usagef(cmd, "--since: %q is not an RFC 3339 time (want such as 2026-12-03T19:00:00Z)", since)
				}
			}
			s, err := a.openStore(ctx, cmd, slog.LevelWarn)
			if err != nil {
				return err
			}
			defer s.close()
			p := newEventPrinter(cmd.OutOrStdout(), asJSON)
			if len(args) == 0 {
				return printLog(ctx, s.store, sinceTime, limit, p)
			}
			opts := eventstore.ReadStreamOptions{From: from, Limit: limit}
			if !sinceTime.IsZero() {
				opts.Limit = 0 // the bound is checked here, so the limit too
			}
			if backward {
				opts.Direction = eventstore.Backward
			}
			events, err := s.store.ReadStream(ctx, args[0], opts)
			if err != nil {
				return err
			}
			printed := 0
			for _, e := range events {
				if e.RecordedAt.Before(sinceTime) {
					continue
				}
				if limit > 0 && printed == limit {
					break
				}
				if err := p.print(e); err != nil {
					return err
				}
				printed++
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print JSON Lines")
	f.Int64Var(&from, "from", 0, "first version to print (default: the first, or the last with --backward)")
	f.BoolVar(&backward, "backward", false, "newest first")
	f.IntVar(&limit, "limit", 0, "print at most this many events (0: all)")
	f.StringVar(&since, "since", "", "only events recorded at or after this time (RFC 3339)")
	return cmd
}

// printLog prints the log from the start up to its head now, the events
// recorded at or after since (zero: all), at most limit of them (zero: no
// limit). Events appended meanwhile are left to events tail.
func printLog(ctx context.Context, log eventstore.LogReader, since time.Time, limit int, p *eventPrinter) error {
	head, err := log.Head(ctx)
	if err != nil {
		return err
	}
	after, printed := eventstore.Start, 0
	for after.Before(head) && (limit == 0 || printed < limit) {
		page := eventstore.DefaultBatchSize
		if limit > 0 {
			page = min(page, limit-printed)
		}
		events, err := log.ReadLog(ctx, after, eventstore.ReadLogOptions{Since: since, Limit: page})
		if err != nil {
			return err
		}
		if len(events) == 0 {
			return nil
		}
		for _, e := range events {
			if head.Before(e.Position) {
				return nil
			}
			if err := p.print(e); err != nil {
				return err
			}
			printed++
		}
		after = events[len(events)-1].Position
	}
	return nil
}

// errNoEventReader: events show on a log that cannot read an event by ID.
var errNoEventReader = errors.New("the event log cannot read an event by ID")

func (a *app) showCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Print one event, with its metadata",
		Long: "Print the event with the given ID: its stream, version, position, type, times, metadata and data.\n" +
			"--json prints it as one JSON document, in the form events read --json prints each event.",
		Args: nArgs(1, 1, "ID"),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			id, err := uuid.Parse(args[0])
			if err != nil {
				return Usagef(cmd, "%s: %q is not an event ID (a UUID)", cmd.CommandPath(), args[0])
			}
			s, err := a.openStore(ctx, cmd, slog.LevelWarn)
			if err != nil {
				return err
			}
			defer s.close()
			r, ok := s.store.(eventstore.EventReader)
			if !ok {
				return fmt.Errorf("%w (%T)", errNoEventReader, s.store)
			}
			e, err := r.ReadEvent(ctx, id)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), eventJSON(e))
			}
			return printEvent(cmd.OutOrStdout(), e)
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// printEvent prints one event for humans: a field a line, metadata keys
// sorted, then the data indented.
func printEvent(w io.Writer, e eventstore.RecordedEvent) error {
	t := newTable(w, "id", e.ID.String())
	t.row("stream", fmt.Sprintf("%s@%d", e.StreamID, e.Version))
	t.row("position", e.Position.String())
	t.row("type", typeName(e))
	t.row("recorded_at", e.RecordedAt.UTC().Format(time.RFC3339Nano))
	occurred := e.OccurredAt
	if occurred.IsZero() {
		occurred = e.RecordedAt
	}
	t.row("occurred_at", occurred.UTC().Format(time.RFC3339Nano))
	m := e.Metadata
	for _, f := range [][2]string{{"correlation_id", m.CorrelationID}, {"causation_id", m.CausationID}, {"command_id", m.CommandID}} {
		if f[1] != "" {
			t.row(f[0], f[1])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m.Extra)) {
		t.row("extra."+k, m.Extra[k])
	}
	for _, k := range slices.Sorted(maps.Keys(m.Values)) {
		t.row("values."+k, compact(m.Values[k]))
	}
	if err := t.flush(); err != nil {
		return err
	}
	var data bytes.Buffer
	if err := json.Indent(&data, e.Data, "  ", "  "); err != nil {
		data.Reset()
		data.Write(e.Data)
	}
	_, err := fmt.Fprintf(w, "data\n  %s\n", data.Bytes())
	return err
}

func (a *app) tailCmd() *cobra.Command {
	var (
		asJSON            bool
		from              string
		types, categories []string
	)
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Follow the live log until interrupted",
		Long: "Print events as they are appended, in log order, until SIGINT or SIGTERM.\n" +
			"--from is a position token (as printed by events read), 'start' for the whole log, or 'head' (the default)\n" +
			"for only what comes next. --json prints one JSON object per line (JSON Lines).",
		Args: nArgs(0, 0, ""),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, _ []string) error {
			var after eventstore.Position
			switch from {
			case "start", "head":
			default:
				var err error
				if after, err = eventstore.ParsePosition(from); err != nil {
					return Usagef(cmd, "--from: %v (want a position such as 1234.5, start or head)", err)
				}
			}
			s, err := a.openStore(ctx, cmd, slog.LevelWarn)
			if err != nil {
				return err
			}
			defer s.close()
			if from == "head" {
				if after, err = s.store.Head(ctx); err != nil {
					return err
				}
			}
			sub, err := s.store.Subscribe(ctx, after, eventstore.SubscribeOptions{Types: types, Categories: categories})
			if err != nil {
				return err
			}
			defer sub.Close()
			fmt.Fprintf(cmd.ErrOrStderr(), "following the log after position %s (stop with Ctrl-C)\n", after)
			p := newEventPrinter(cmd.OutOrStdout(), asJSON)
			for {
				batch, err := sub.NextBatch(ctx)
				if ctx.Err() != nil {
					return nil
				}
				if err != nil {
					if errors.Is(err, eventstore.ErrSubscriptionClosed) {
						return nil
					}
					return err
				}
				for _, e := range batch {
					if err := p.print(e); err != nil {
						return err
					}
				}
			}
		}),
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print JSON Lines")
	f.StringVar(&from, "from", "head", "print events after this position: a token, start or head")
	f.StringSliceVar(&types, "type", nil, "only events of this type (repeatable)")
	f.StringSliceVar(&categories, "category", nil, "only events of streams in this category, the stream ID up to its first '-' (repeatable)")
	return cmd
}
