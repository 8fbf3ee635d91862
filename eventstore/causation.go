package eventstore

import "context"

// Causation is what a command's handling passes down to the events it
// appends: the command's identity for idempotency, and the correlation and
// causation IDs every resulting event carries. The command dispatcher puts
// it in the context; aggregate repositories read it when saving.
type Causation struct {
	CommandID     string
	CommandType   string
	CorrelationID string
	// CausedBy is the ID of what caused the command itself (an event, for a
	// command sent by a saga), kept in the events' metadata as "caused_by".
	CausedBy    string
	PayloadHash []byte
	// Metadata is the command's free-form metadata, copied into every
	// event's Metadata.Extra (keys the event already has win).
	Metadata map[string]string
}

type causationKey struct{}

// WithCausation returns a context carrying c.
func WithCausation(ctx context.Context, c Causation) context.Context {
	return context.WithValue(ctx, causationKey{}, c)
}

// CausationFrom returns the Causation in ctx, if any.
func CausationFrom(ctx context.Context) (Causation, bool) {
	c, ok := ctx.Value(causationKey{}).(Causation)
	return c, ok
}

// Stamp fills the metadata of events from c: the correlation ID, the command
// ID as the causation ID, and the command ID. It returns the append options
// that record the command with the events.
func (c Causation) Stamp(events []Event) []AppendOption {
	for i := range events {
		m := &events[i].Metadata
		if m.CorrelationID == "" {
			m.CorrelationID = c.CorrelationID
		}
		if m.CausationID == "" {
			m.CausationID = c.CommandID
		}
		if m.CommandID == "" {
			m.CommandID = c.CommandID
		}
		if len(c.Metadata) > 0 || c.CausedBy != "" {
			extra := make(map[string]string, len(c.Metadata)+len(m.Extra)+1)
			for k, v := range c.Metadata {
				extra[k] = v
			}
			if c.CausedBy != "" {
				extra["caused_by"] = c.CausedBy
			}
			for k, v := range m.Extra {
				extra[k] = v
			}
			m.Extra = extra
		}
	}
	if c.CommandID == "" {
		return nil
	}
	return []AppendOption{WithCommand(CommandRecord{ID: c.CommandID, Type: c.CommandType, PayloadHash: c.PayloadHash})}
}
