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
	PayloadHash   []byte
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
	}
	if c.CommandID == "" {
		return nil
	}
	return []AppendOption{WithCommand(CommandRecord{ID: c.CommandID, Type: c.CommandType, PayloadHash: c.PayloadHash})}
}
