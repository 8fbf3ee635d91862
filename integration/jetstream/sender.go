// Package jetstream carries integration messages (package integration)
// over NATS JetStream: a Sender for publishers, a Consumer that feeds an
// inbox from a durable pull consumer, and the administration of dead
// letters.
//
// Publishing: a message's ID (the event's) goes in Nats-Msg-Id, so the
// stream drops a copy published again within its deduplication window
// (StreamConfig.Duplicates, two minutes unless set). Create the stream
// that captures the publisher's subjects beforehand (js.CreateOrUpdateStream).
//
// Consuming: see Consumer. Every delivery is acknowledged only once the
// inbox has handled it (its command committed, or was a duplicate, or was
// rejected); transient failures are redelivered with backoff and jitter,
// and a message that fails past the bound, or can never succeed, is
// published to a dead-letter stream and terminated.
package jetstream

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/cairn-es/cairn/integration"
)

// DefaultURL is the NATS server used when none is given and NATS_URL is
// unset.
const DefaultURL = "nats://127.0.0.1:4222"

// URL returns $NATS_URL, or DefaultURL when it is unset.
func URL() string {
	if u := os.Getenv("NATS_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// ErrUnreachable: no NATS server could be reached.
var ErrUnreachable = errors.New("jetstream: NATS server unreachable")

// Connect connects to the NATS server at url (a comma-separated list for
// a cluster) for as long as the process lives: it reconnects forever
// after losing the server (the default gives up after two minutes),
// waiting 250ms plus jitter between attempts, so a publisher or consumer
// resumes by itself when the server is back. opts come after these
// defaults and may override them. Close the connection when done (Drain
// lets in-flight work finish first).
func Connect(url string, opts ...nats.Option) (*nats.Conn, error) {
	all := append([]nats.Option{
		nats.Name("cairn"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.Timeout(5 * time.Second),
	}, opts...)
	nc, err := nats.Connect(url, all...)
	if err != nil {
		return nil, fmt.Errorf("%w: connecting to %s: %w (start one with `nats-server -js`, Debian package nats-server, or set NATS_URL)",
			ErrUnreachable, redact(url), err)
	}
	return nc, nil
}

// redact masks the password of a URL for messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(a URL that does not parse)"
	}
	return u.Redacted()
}

// SenderConfig configures a Sender. The zero value is usable.
type SenderConfig struct {
	// Timeout bounds one publish, the stream's acknowledgement included
	// (default 5s). A publish that times out is retried by the publisher
	// as an outage.
	Timeout time.Duration
}

// Sender publishes envelopes to JetStream, one at a time, waiting for the
// stream's acknowledgement: an integration.Sender.
type Sender struct {
	js  natsjs.JetStream
	cfg SenderConfig
}

// NewSender returns a sender publishing through js.
func NewSender(js natsjs.JetStream, cfg SenderConfig) *Sender {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	return &Sender{js: js, cfg: cfg}
}

// Send publishes env with its ID as Nats-Msg-Id and waits for the stream's
// acknowledgement. A message the server refuses for itself (too large, a
// bad subject) wraps integration.ErrUndeliverable; every other failure
// (no server, no stream for the subject, a timeout) is the broker's.
func (s *Sender) Send(ctx context.Context, env integration.Envelope) (integration.Receipt, error) {
	msg := nats.NewMsg(env.Subject)
	msg.Data = env.Data
	for k, v := range env.Headers {
		msg.Header.Set(k, v)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	ack, err := s.js.PublishMsg(ctx, msg, natsjs.WithMsgID(env.ID))
	if err != nil {
		if undeliverable(err) {
			return integration.Receipt{}, fmt.Errorf("%w: %w", integration.ErrUndeliverable, err)
		}
		return integration.Receipt{}, err
	}
	return integration.Receipt{Duplicate: ack.Duplicate, Sequence: ack.Sequence}, nil
}

// undeliverable tells the failures of the message from those of the
// broker.
func undeliverable(err error) bool {
	return errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadSubject) ||
		errors.Is(err, natsjs.ErrStreamMessageExceedsMaximum)
}
