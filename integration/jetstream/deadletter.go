package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/cairn-es/cairn/integration"
)

// DeadLetter is a message a Consumer set aside, as its dead-letter stream
// keeps it.
type DeadLetter struct {
	// Sequence is its place in the dead-letter stream: what RetryDeadLetter
	// takes.
	Sequence      uint64    `json:"sequence"`
	MessageID     string    `json:"message_id"`
	Type          string    `json:"type"`
	Version       int       `json:"version"`
	Key           string    `json:"key"`
	CorrelationID string    `json:"correlation_id,omitempty"`
	Error         string    `json:"error"`
	Deliveries    int       `json:"deliveries"`
	DeadAt        time.Time `json:"dead_at"`
	// Stream, StreamSequence and Subject are where the message was
	// consumed from; Consumer is the durable consumer that gave up.
	Stream         string          `json:"stream"`
	StreamSequence uint64          `json:"stream_sequence"`
	Subject        string          `json:"subject"`
	Consumer       string          `json:"consumer"`
	Data           json.RawMessage `json:"data"`
}

// DeadLetterStream summarises one dead-letter stream.
type DeadLetterStream struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Messages    uint64 `json:"messages"`
}

// ErrNotDeadLetter: a sequence that holds no dead letter (retried
// already, or never there).
var ErrNotDeadLetter = errors.New("jetstream: no such dead letter")

// DeadLetterStreams lists the dead-letter streams Consumers created, with
// their message counts.
func DeadLetterStreams(ctx context.Context, js natsjs.JetStream) ([]DeadLetterStream, error) {
	l := js.ListStreams(ctx)
	var out []DeadLetterStream
	for info := range l.Info() {
		if strings.HasPrefix(info.Config.Description, DeadLetterDescription) {
			out = append(out, DeadLetterStream{Name: info.Config.Name, Description: info.Config.Description, Messages: info.State.Msgs})
		}
	}
	if err := l.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// DeadLetters returns up to limit (0: all) dead letters of stream, oldest
// first.
func DeadLetters(ctx context.Context, js natsjs.JetStream, stream string, limit int) ([]DeadLetter, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("dead-letter stream %s: %w", stream, err)
	}
	st := s.CachedInfo().State
	var out []DeadLetter
	for seq := st.FirstSeq; seq <= st.LastSeq && st.Msgs > 0 && (limit <= 0 || len(out) < limit); seq++ {
		raw, err := s.GetMsg(ctx, seq)
		if errors.Is(err, natsjs.ErrMsgNotFound) {
			continue // retried: deleted
		}
		if err != nil {
			return nil, fmt.Errorf("dead-letter stream %s: reading message %d: %w", stream, seq, err)
		}
		out = append(out, deadLetterOf(raw))
	}
	return out, nil
}

func deadLetterOf(raw *natsjs.RawStreamMsg) DeadLetter {
	h := raw.Header
	env := integration.Envelope{Subject: h.Get(HeaderDeadLetterSubject), Data: raw.Data, Headers: map[string]string{}}
	for k, v := range h {
		if len(v) > 0 {
			env.Headers[k] = v[0]
		}
	}
	m := integration.Decode(env)
	d := DeadLetter{
		Sequence: raw.Sequence, MessageID: m.ID, Type: m.Type, Version: m.Version, Key: m.Key,
		CorrelationID: m.CorrelationID, Error: h.Get(HeaderDeadLetterError),
		Stream: h.Get(HeaderDeadLetterStream), Subject: env.Subject, Consumer: h.Get(HeaderDeadLetterConsumer),
		Data: json.RawMessage(raw.Data),
	}
	d.Deliveries, _ = strconv.Atoi(h.Get(HeaderDeadLetterDeliveries))
	d.StreamSequence, _ = strconv.ParseUint(h.Get(HeaderDeadLetterSequence), 10, 64)
	d.DeadAt, _ = time.Parse(time.RFC3339Nano, h.Get(HeaderDeadLetterAt))
	if d.DeadAt.IsZero() {
		d.DeadAt = raw.Time
	}
	return d
}

// RetryDeadLetter publishes the dead letter at seq of stream again, to
// the subject it was consumed from, and deletes it from the dead-letter
// stream. It keeps its message ID, so the inbox dispatches the same
// command ID: a message whose command did commit after all is answered
// from the command log. Every consumer of the subject receives it again.
func RetryDeadLetter(ctx context.Context, js natsjs.JetStream, stream string, seq uint64) (DeadLetter, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("dead-letter stream %s: %w", stream, err)
	}
	raw, err := s.GetMsg(ctx, seq)
	if errors.Is(err, natsjs.ErrMsgNotFound) {
		return DeadLetter{}, fmt.Errorf("%w: %s has no message %d", ErrNotDeadLetter, stream, seq)
	}
	if err != nil {
		return DeadLetter{}, err
	}
	d := deadLetterOf(raw)
	if d.Subject == "" || d.MessageID == "" {
		return d, fmt.Errorf("%w: message %d of %s is not a dead letter (no %s or %s header)",
			ErrNotDeadLetter, seq, stream, HeaderDeadLetterSubject, integration.HeaderMessageID)
	}
	msg := nats.NewMsg(d.Subject)
	msg.Data = raw.Data
	for k, v := range raw.Header {
		l := strings.ToLower(k)
		if len(v) > 0 && !strings.HasPrefix(l, "nats-") && !strings.HasPrefix(l, "cairn-dlq-") {
			msg.Header.Set(k, v[0])
		}
	}
	// A new Nats-Msg-Id: the original is still in the source stream's
	// deduplication window, perhaps. Retrying the same dead letter twice
	// is dropped as a duplicate.
	id := fmt.Sprintf("%s:retry:%s:%d", d.MessageID, stream, seq)
	if _, err := js.PublishMsg(ctx, msg, natsjs.WithMsgID(id)); err != nil {
		return d, fmt.Errorf("republishing dead letter %d of %s to %s: %w", seq, stream, d.Subject, err)
	}
	if err := s.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, natsjs.ErrMsgNotFound) {
		return d, fmt.Errorf("republished dead letter %d of %s, but deleting it failed (retrying it again is harmless): %w", seq, stream, err)
	}
	return d, nil
}
