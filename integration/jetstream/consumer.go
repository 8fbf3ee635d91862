package jetstream

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/cairn-es/cairn/integration"
	"github.com/cairn-es/cairn/internal/pgerr"
	"github.com/cairn-es/cairn/retry"
)

// ConsumerConfig configures a Consumer. Stream is required; every other
// zero field takes the default its comment names.
type ConsumerConfig struct {
	// Stream is the JetStream stream to consume. Required.
	Stream string
	// Durable names the durable consumer on the server (default: the
	// inbox's name): [A-Za-z0-9_-]+. Processes of one service share it,
	// and so share the work.
	Durable string
	// Subjects filter the stream (default: all of it). More than one needs
	// a NATS server 2.10 or newer.
	Subjects []string
	// MaxAckPending bounds the messages delivered and not acknowledged
	// yet, across every process sharing the consumer: the backpressure.
	// The server delivers no more until some are acknowledged (default
	// 256).
	MaxAckPending int
	// Concurrency is the number of messages handled at once in this
	// process (default 1). Messages of one key (integration.HeaderKey,
	// else the subject) are handled by one worker, in delivery order.
	Concurrency int
	// AckWait is how long the server waits for an acknowledgement before
	// delivering a message again (default 30s). It also bounds the
	// handling of one delivery.
	AckWait time.Duration
	// Retry bounds and spaces the deliveries of a message that fails: its
	// MaxAttempts deliveries (default 5), redelivered after
	// Retry.Delay(n) (BaseDelay 500ms doubling up to MaxDelay 30s, with
	// jitter); after the last, the message is dead-lettered.
	Retry retry.Policy
	// DeadLetterStream is the stream keeping the consumer's dead letters
	// (default DeadLetterStreamName(Durable)); it is created when missing.
	DeadLetterStream string
	// DeadLetterSubject is the subject dead letters are published on
	// (default "cairn.dlq." + Durable); the dead-letter stream captures it.
	DeadLetterSubject string
	// PendingEvery is how often the consumer's counts are read from the
	// server for integration.MetricConsumerPending (default 5s).
	PendingEvery time.Duration
	// Metrics records deliveries, redeliveries, dead letters and pending
	// counts (default: none).
	Metrics *integration.Metrics
	// Logger receives the consumer's failures and dead letters (default
	// slog.Default()).
	Logger *slog.Logger
}

// DefaultRetry is the default of ConsumerConfig.Retry.
var DefaultRetry = retry.Policy{MaxAttempts: 5, BaseDelay: 500 * time.Millisecond, MaxDelay: 30 * time.Second}

// DeadLetterStreamName is the default dead-letter stream of a durable
// consumer: "DLQ_" + durable.
func DeadLetterStreamName(durable string) string { return "DLQ_" + durable }

// DeadLetterDescription starts the description of every dead-letter
// stream a Consumer creates: how DeadLetterStreams finds them.
const DeadLetterDescription = "cairn dead letters"

var namePattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Consumer feeds an inbox from a durable JetStream pull consumer.
type Consumer struct {
	js    natsjs.JetStream
	inbox *integration.Inbox
	cfg   ConsumerConfig
	log   *slog.Logger
}

// NewConsumer returns a consumer of cfg.Stream handing messages to inbox.
// Run consumes.
func NewConsumer(js natsjs.JetStream, inbox *integration.Inbox, cfg ConsumerConfig) (*Consumer, error) {
	if js == nil || inbox == nil {
		return nil, errors.New("jetstream: a consumer needs a JetStream handle and an inbox")
	}
	cfg, err := cfg.withDefaults(inbox.Name())
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("inbox", inbox.Name(), "stream", cfg.Stream, "consumer", cfg.Durable)
	return &Consumer{js: js, inbox: inbox, cfg: cfg, log: log}, nil
}

// withDefaults checks cfg and fills its zero fields.
func (cfg ConsumerConfig) withDefaults(inbox string) (ConsumerConfig, error) {
	if cfg.Durable == "" {
		cfg.Durable = inbox
	}
	for _, n := range [][2]string{{"stream", cfg.Stream}, {"durable", cfg.Durable}} {
		if !namePattern.MatchString(n[1]) {
			return cfg, fmt.Errorf("jetstream: consumer %s name %q: want [A-Za-z0-9_-]+", n[0], n[1])
		}
	}
	if cfg.MaxAckPending <= 0 {
		cfg.MaxAckPending = 256
	}
	cfg.Concurrency = max(cfg.Concurrency, 1)
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	cfg.Retry = cfg.Retry.WithDefaults(DefaultRetry)
	if cfg.DeadLetterStream == "" {
		cfg.DeadLetterStream = DeadLetterStreamName(cfg.Durable)
	}
	if cfg.DeadLetterSubject == "" {
		cfg.DeadLetterSubject = "cairn.dlq." + cfg.Durable
	}
	if err := integration.ValidSubject(cfg.DeadLetterSubject); err != nil {
		return cfg, fmt.Errorf("jetstream: dead-letter subject: %w", err)
	}
	if cfg.PendingEvery <= 0 {
		cfg.PendingEvery = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}

// Run consumes until ctx ends, then returns nil once the deliveries in
// hand are settled: the one being handled has its context cancelled, and
// it and those not handled yet are handed back to the server (a nak, once
// unsubscribed) for another process to take at once; a command that did
// commit is then answered from the command log. When consuming cannot
// start or breaks (no server, no stream, the consumer deleted), Run logs
// it and tries again with backoff and jitter, up to 5s apart; a
// connection that drops and comes back is resumed by the client itself.
func (c *Consumer) Run(ctx context.Context) error {
	backoff := retry.Policy{BaseDelay: 100 * time.Millisecond, MaxDelay: 5 * time.Second}
	failures := 0
	lastErr := ""
	for ctx.Err() == nil {
		err := c.consume(ctx, func() {
			if failures > 0 {
				c.log.Info("cairn: integration consumer recovered", "failed_attempts", failures)
				failures, lastErr = 0, ""
			}
		})
		if ctx.Err() != nil {
			break
		}
		if err == nil {
			err = errors.New("consuming stopped")
		}
		failures++
		if err.Error() != lastErr {
			c.log.Warn("cairn: integration consumer interrupted; retrying", "error", err, "failed_attempts", failures)
			lastErr = err.Error()
		} else {
			c.log.Debug("cairn: integration consumer retry failed", "error", err, "failed_attempts", failures)
		}
		_ = retry.Sleep(ctx, backoff.Delay(failures))
	}
	return nil
}

// consume sets up the dead-letter stream and the durable consumer, then
// hands deliveries to the workers until ctx ends or consuming stops; up is
// called once messages can flow.
func (c *Consumer) consume(ctx context.Context, up func()) error {
	if err := c.ensureDeadLetterStream(ctx); err != nil {
		return err
	}
	cons, err := c.js.CreateOrUpdateConsumer(ctx, c.cfg.Stream, c.consumerConfig())
	if err != nil {
		return fmt.Errorf("creating consumer %s on stream %s: %w", c.cfg.Durable, c.cfg.Stream, err)
	}
	s := &session{c: c, queues: make([]chan natsjs.Msg, c.cfg.Concurrency), draining: make(chan struct{})}
	var workers sync.WaitGroup
	for i := range s.queues {
		s.queues[i] = make(chan natsjs.Msg, c.cfg.MaxAckPending)
		workers.Go(func() { s.work(ctx, s.queues[i]) })
	}
	cc, err := cons.Consume(s.receive,
		natsjs.PullMaxMessages(c.cfg.MaxAckPending),
		natsjs.ConsumeErrHandler(func(_ natsjs.ConsumeContext, err error) {
			c.log.Debug("cairn: integration consumer", "error", err)
		}))
	if err != nil {
		close(s.draining)
		workers.Wait()
		return fmt.Errorf("consuming %s: %w", c.cfg.Durable, err)
	}
	up()
	var poller sync.WaitGroup
	poller.Go(func() { c.pollPending(ctx, cons, s.draining) })
	select {
	case <-ctx.Done():
	case <-cc.Closed():
	}
	s.end(cc, &workers)
	poller.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("consuming %s stopped (consumer deleted or connection closed)", c.cfg.Durable)
}

// drainTimeout bounds the wait for the subscription's end at shutdown.
const drainTimeout = 5 * time.Second

// session is one run of consuming: the workers' queues, and the
// deliveries to hand back to the server when it ends.
type session struct {
	c        *Consumer
	queues   []chan natsjs.Msg
	draining chan struct{} // closed when the session ends

	mu   sync.Mutex
	back []natsjs.Msg
}

// receive is the subscription's callback: it queues a delivery for the
// worker of its key.
func (s *session) receive(msg natsjs.Msg) {
	select {
	case <-s.draining:
		s.handBack(msg)
		return
	default:
	}
	select {
	case s.queues[s.c.worker(msg)] <- msg:
	case <-s.draining:
		s.handBack(msg)
	}
}

// work handles a worker's deliveries until the session ends.
func (s *session) work(ctx context.Context, q <-chan natsjs.Msg) {
	for {
		select {
		case <-s.draining:
			return
		case msg := <-q:
			if !s.c.handle(ctx, msg) {
				s.handBack(msg)
			}
		}
	}
}

func (s *session) handBack(msg natsjs.Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.back = append(s.back, msg)
}

// end stops the session. The deliveries not settled (queued, in the
// subscription's buffer, interrupted) are handed back to the server with
// a nak so that another process takes them now rather than after AckWait,
// but only once the subscription is gone: a nak before would have the
// server deliver them straight back to it, where they would sit until
// AckWait.
func (s *session) end(cc natsjs.ConsumeContext, workers *sync.WaitGroup) {
	close(s.draining)
	cc.Drain()
	select {
	case <-cc.Closed():
	case <-time.After(drainTimeout):
		cc.Stop()
	}
	workers.Wait()
	for _, q := range s.queues {
		for len(q) > 0 {
			s.handBack(<-q)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, msg := range s.back {
		_ = msg.Nak()
	}
	s.back = nil
}

func (c *Consumer) consumerConfig() natsjs.ConsumerConfig {
	cfg := natsjs.ConsumerConfig{
		Durable:     c.cfg.Durable,
		Description: "cairn inbox " + c.inbox.Name(),
		AckPolicy:   natsjs.AckExplicitPolicy,
		AckWait:     c.cfg.AckWait,
		// The bound is applied here, not by the server: a server that
		// stops delivering a message after MaxDeliver would leave it
		// unacknowledged and never dead-lettered when the last delivery
		// is lost (a crash, an AckWait expired).
		MaxDeliver:    -1,
		MaxAckPending: c.cfg.MaxAckPending,
		DeliverPolicy: natsjs.DeliverAllPolicy,
	}
	switch len(c.cfg.Subjects) {
	case 0:
	case 1:
		cfg.FilterSubject = c.cfg.Subjects[0]
	default:
		cfg.FilterSubjects = c.cfg.Subjects
	}
	return cfg
}

// worker picks the worker of a message by its key, so that one key is
// handled in delivery order.
func (c *Consumer) worker(msg natsjs.Msg) int {
	if c.cfg.Concurrency == 1 {
		return 0
	}
	key := msg.Headers().Get(integration.HeaderKey)
	if key == "" {
		key = msg.Subject()
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(c.cfg.Concurrency))
}

// pollPending reads the consumer's counts for the metrics until stop.
func (c *Consumer) pollPending(ctx context.Context, cons natsjs.Consumer, stop <-chan struct{}) {
	if c.cfg.Metrics == nil {
		return
	}
	t := time.NewTicker(c.cfg.PendingEvery)
	defer t.Stop()
	for {
		ictx, cancel := context.WithTimeout(ctx, c.cfg.PendingEvery)
		info, err := cons.Info(ictx)
		cancel()
		if err == nil {
			c.cfg.Metrics.SetPending(c.inbox.Name(), info.NumPending, uint64(info.NumAckPending))
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// delivery is one delivery of a message being handled.
type delivery struct {
	msg     natsjs.Msg
	meta    *natsjs.MsgMetadata
	m       integration.Message
	attempt int // 1 for the first delivery
	log     *slog.Logger
}

// handle settles one delivery: acknowledged once handled, redelivered
// later after a transient failure, dead-lettered past the bound or when
// no delivery can succeed. It returns false, the delivery unsettled, when
// ctx ended meanwhile.
func (c *Consumer) handle(ctx context.Context, msg natsjs.Msg) bool {
	meta, err := msg.Metadata()
	if err != nil {
		c.log.Error("cairn: integration consumer got a message without JetStream metadata", "subject", msg.Subject(), "error", err)
		_ = msg.Term()
		return true
	}
	d := delivery{msg: msg, meta: meta, m: integration.Decode(envelopeOf(msg, meta)), attempt: int(meta.NumDelivered)}
	d.log = c.log.With("message_id", d.m.ID, "type", d.m.Type, "delivery", d.attempt)
	hctx, cancel := context.WithTimeout(ctx, c.cfg.AckWait)
	outcome, res, err := c.inbox.Receive(hctx, d.m)
	cancel()
	switch {
	case outcome.Final():
		if ackErr := msg.Ack(); ackErr != nil {
			d.log.Warn("cairn: acknowledging an integration message failed; it will be redelivered", "error", ackErr)
		}
		switch outcome {
		case integration.Rejected:
			d.log.Info("cairn: integration message's command rejected", "command_id", res.CommandID, "error", err)
		case integration.Ignored:
			d.log.Debug("cairn: integration message ignored", "error", err)
		}
	case ctx.Err() != nil:
		// Shutting down: not a failure of the message, so not counted;
		// the session hands it back.
		return false
	default:
		outcome = c.failed(ctx, d, outcome, err)
	}
	c.cfg.Metrics.Delivered(c.inbox.Name(), d.m, d.attempt, outcome)
	return true
}

// failed settles a delivery that failed: redelivered later, with backoff,
// while the failure is transient and the bound not reached, else
// dead-lettered. A database that cannot be reached is no failure of the
// message: its deliveries are redelivered, with backoff, until it is back,
// however long that takes, as the projection runner and the publisher wait
// out an outage. It returns what it did.
func (c *Consumer) failed(ctx context.Context, d delivery, outcome integration.Outcome, cause error) integration.Outcome {
	if outcome == integration.Retry && pgerr.Transient(cause) {
		delay := c.cfg.Retry.Delay(d.attempt)
		d.log.Warn("cairn: integration message not handled, the database is unavailable; it will be redelivered", "error", cause, "after", delay)
		_ = d.msg.NakWithDelay(delay)
		return integration.Retry
	}
	if outcome == integration.Retry && d.attempt < c.cfg.Retry.MaxAttempts {
		delay := c.cfg.Retry.Delay(d.attempt)
		d.log.Warn("cairn: integration message failed; it will be redelivered", "error", cause, "after", delay,
			"max_attempts", c.cfg.Retry.MaxAttempts)
		_ = d.msg.NakWithDelay(delay)
		return integration.Retry
	}
	if err := c.deadLetter(ctx, d, cause); err != nil {
		d.log.Error("cairn: dead-lettering an integration message failed; it will be redelivered", "error", err, "cause", cause)
		_ = d.msg.NakWithDelay(c.cfg.Retry.MaxDelay)
		return integration.Retry
	}
	d.log.Error("cairn: integration message dead-lettered", "error", cause, "dead_letter_stream", c.cfg.DeadLetterStream)
	return integration.DeadLetter
}

// envelopeOf reads a delivery. The message ID is the publisher's
// (Cairn-Message-Id, read by Decode), else the broker's (Nats-Msg-Id),
// else the stream and sequence: stable across redeliveries either way.
func envelopeOf(msg natsjs.Msg, meta *natsjs.MsgMetadata) integration.Envelope {
	h := msg.Headers()
	env := integration.Envelope{Subject: msg.Subject(), Data: msg.Data(), Headers: make(map[string]string, len(h))}
	for k, v := range h {
		if len(v) > 0 {
			env.Headers[k] = v[0]
		}
	}
	env.ID = h.Get(natsjs.MsgIDHeader)
	if env.ID == "" {
		env.ID = meta.Stream + ":" + strconv.FormatUint(meta.Sequence.Stream, 10)
	}
	return env
}

// Headers of a dead letter, besides the message's own.
const (
	HeaderDeadLetterError      = "Cairn-Dlq-Error"
	HeaderDeadLetterStream     = "Cairn-Dlq-Stream"
	HeaderDeadLetterSubject    = "Cairn-Dlq-Subject"
	HeaderDeadLetterSequence   = "Cairn-Dlq-Sequence"
	HeaderDeadLetterConsumer   = "Cairn-Dlq-Consumer"
	HeaderDeadLetterDeliveries = "Cairn-Dlq-Deliveries"
	HeaderDeadLetterAt         = "Cairn-Dlq-At"
)

// maxErrorHeader bounds the error kept in a dead letter's header.
const maxErrorHeader = 2000

// deadLetter publishes the delivery to the dead-letter subject, with why,
// and terminates it. Its Nats-Msg-Id is the delivery's stream and
// sequence, so a replay after a crash between the two is dropped.
func (c *Consumer) deadLetter(ctx context.Context, d delivery, cause error) error {
	msg, meta := d.msg, d.meta
	dl := nats.NewMsg(c.cfg.DeadLetterSubject)
	dl.Data = msg.Data()
	for k, v := range msg.Headers() {
		if !strings.HasPrefix(strings.ToLower(k), "nats-") && len(v) > 0 {
			dl.Header.Set(k, v[0])
		}
	}
	// The message's ID travels with it, so that a retry dispatches the
	// same command ID even for a message that had none of Cairn's.
	dl.Header.Set(integration.HeaderMessageID, d.m.ID)
	why := "unknown"
	if cause != nil {
		why = cause.Error()
	}
	why = strings.Join(strings.Fields(why), " ")
	if len(why) > maxErrorHeader {
		why = why[:maxErrorHeader] + "…"
	}
	dl.Header.Set(HeaderDeadLetterError, why)
	dl.Header.Set(HeaderDeadLetterStream, meta.Stream)
	dl.Header.Set(HeaderDeadLetterSubject, msg.Subject())
	dl.Header.Set(HeaderDeadLetterSequence, strconv.FormatUint(meta.Sequence.Stream, 10))
	dl.Header.Set(HeaderDeadLetterConsumer, meta.Consumer)
	dl.Header.Set(HeaderDeadLetterDeliveries, strconv.Itoa(d.attempt))
	dl.Header.Set(HeaderDeadLetterAt, time.Now().UTC().Format(time.RFC3339Nano))
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	id := fmt.Sprintf("%s:%d:dlq", meta.Stream, meta.Sequence.Stream)
	if _, err := c.js.PublishMsg(pctx, dl, natsjs.WithMsgID(id)); err != nil {
		return err
	}
	return msg.Term()
}

// ensureDeadLetterStream creates the dead-letter stream when it is
// missing, and checks that an existing one captures the subject.
func (c *Consumer) ensureDeadLetterStream(ctx context.Context) error {
	s, err := c.js.Stream(ctx, c.cfg.DeadLetterStream)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		_, err = c.js.CreateStream(ctx, natsjs.StreamConfig{
			Name:        c.cfg.DeadLetterStream,
			Description: fmt.Sprintf("%s of consumer %s on stream %s", DeadLetterDescription, c.cfg.Durable, c.cfg.Stream),
			Subjects:    []string{c.cfg.DeadLetterSubject},
			Storage:     natsjs.FileStorage,
			Retention:   natsjs.LimitsPolicy,
		})
		if errors.Is(err, natsjs.ErrStreamNameAlreadyInUse) {
			return nil // another process created it meanwhile
		}
		if err != nil {
			return fmt.Errorf("creating dead-letter stream %s: %w", c.cfg.DeadLetterStream, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("looking up dead-letter stream %s: %w", c.cfg.DeadLetterStream, err)
	}
	for _, pattern := range s.CachedInfo().Config.Subjects {
		if subjectMatches(pattern, c.cfg.DeadLetterSubject) {
			return nil
		}
	}
	return fmt.Errorf("dead-letter stream %s does not capture subject %s (it captures %v)",
		c.cfg.DeadLetterStream, c.cfg.DeadLetterSubject, s.CachedInfo().Config.Subjects)
}

// subjectMatches tells whether subject falls under pattern, with NATS
// wildcards: * for one token, > for one or more at the end.
func subjectMatches(pattern, subject string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, tok := range p {
		switch {
		case tok == ">":
			return len(s) > i
		case i >= len(s):
			return false
		case tok != "*" && tok != s[i]:
			return false
		}
	}
	return len(p) == len(s)
}
