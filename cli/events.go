package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	cmd.AddCommand(a.readCmd(), a.tailCmd())
	return cmd
}

// EventJSON is the JSON form of a recorded event that events read and
// events tail print, one per line.
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
}

func eventJSON(e eventstore.RecordedEvent) EventJSON {
	out := EventJSON{ID: e.ID, StreamID: e.StreamID, Version: e.Version, Position: e.Position, Type: e.Type,
		SchemaVersion: max(e.SchemaVersion, 1), Data: e.Data, RecordedAt: e.RecordedAt}
	if m := e.Metadata; m.CorrelationID != "" || m.CausationID != "" || m.CommandID != "" || len(m.Extra) > 0 {
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
	typ := e.Type
	if e.SchemaVersion > 1 {
		typ += "/v" + strconv.Itoa(e.SchemaVersion)
	}
	_, err := fmt.Fprintf(p.w, "%s  %s@%d  %s  %s  %s\n", e.Position, e.StreamID, e.Version,
		e.RecordedAt.Local().Format("2006-01-02 15:04:05.000"), typ, compact(e.Data))
	return err
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
	)
	cmd := &cobra.Command{
		Use:   "read STREAM",
		Short: "Print a stream's events",
		Long: "Print a stream's events, oldest first (newest first with --backward): position, stream@version,\n" +
			"time, type and data. --json prints one JSON object per line (JSON Lines).",
		Args: nArgs(1, 1, "STREAM"),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if from < 0 || limit < 0 {
				return Usagef(cmd, "%s: --from and --limit must not be negative", cmd.CommandPath())
			}
			s, err := a.openStore(ctx, cmd, slog.LevelWarn)
			if err != nil {
				return err
			}
			defer s.close()
			opts := eventstore.ReadStreamOptions{From: from, Limit: limit}
			if backward {
				opts.Direction = eventstore.Backward
			}
			events, err := s.store.ReadStream(ctx, args[0], opts)
			if err != nil {
				return err
			}
			p := newEventPrinter(cmd.OutOrStdout(), asJSON)
			for _, e := range events {
				if err := p.print(e); err != nil {
					return err
				}
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print JSON Lines")
	f.Int64Var(&from, "from", 0, "first version to print (default: the first, or the last with --backward)")
	f.BoolVar(&backward, "backward", false, "newest first")
	f.IntVar(&limit, "limit", 0, "print at most this many events (0: all)")
	return cmd
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
