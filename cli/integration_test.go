package cli

// An internal test: the integration commands are not on the root command
// until cli.go registers them.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/cairn-es/cairn/integration"
	"github.com/cairn-es/cairn/integration/jetstream"
)

func TestIntegrationDeadLettersAndRetry(t *testing.T) {
	nc, err := jetstream.Connect(jetstream.URL(), nats.MaxReconnects(0))
	if err != nil {
		t.Fatalf("%v\nRun the tests with `make test` (scripts/with-nats.sh starts a private nats-server when none answers), "+
			"or point NATS_URL at a server with JetStream enabled.", err)
	}
	t.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	ctx := context.Background()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	source, inbox := "T_"+id, "inbox"+id
	dlq := jetstream.DeadLetterStreamName(inbox)
	for name, cfg := range map[string]natsjs.StreamConfig{
		source: {Subjects: []string{"t" + id + ".>"}},
		dlq:    {Subjects: []string{"cairn.dlq." + inbox}, Description: jetstream.DeadLetterDescription + " of consumer " + inbox + " on stream " + source},
	} {
		cfg.Name = name
		_, err := js.CreateStream(ctx, cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = js.DeleteStream(context.Background(), name) })
	}
	// A dead letter as a consumer writes it.
	dl := nats.NewMsg("cairn.dlq." + inbox)
	dl.Data = []byte(`{"order":"o-1"}`)
	for k, v := range map[string]string{
		integration.HeaderMessageID: "msg-1", integration.HeaderType: "PaymentReceived", integration.HeaderVersion: "2",
		integration.HeaderKey: "order-o-1", jetstream.HeaderDeadLetterError: "the warehouse is down",
		jetstream.HeaderDeadLetterStream: source, jetstream.HeaderDeadLetterSubject: "t" + id + ".PaymentReceived",
		jetstream.HeaderDeadLetterSequence: "7", jetstream.HeaderDeadLetterConsumer: inbox, jetstream.HeaderDeadLetterDeliveries: "5",
		jetstream.HeaderDeadLetterAt: time.Now().UTC().Format(time.RFC3339Nano),
	} {
		dl.Header.Set(k, v)
	}
	_, err = js.PublishMsg(ctx, dl)
	require.NoError(t, err)

	run := func(args ...string) (string, error) {
		cmd := (&app{cfg: Config{Name: "cairn"}}).integrationCmd()
		var out, errOut bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		cmd.SetArgs(args)
		err := cmd.ExecuteContext(ctx)
		return out.String(), err
	}

	out, err := run("dead-letters")
	require.NoError(t, err)
	require.Contains(t, out, dlq)

	out, err = run("dead-letters", inbox)
	require.NoError(t, err)
	for _, want := range []string{"PaymentReceived v2", "msg-1", "order-o-1", source + "#7", "the warehouse is down", "integration retry " + inbox} {
		require.Contains(t, out, want)
	}
	out, err = run("dead-letters", "--stream", dlq, "--json")
	require.NoError(t, err)
	var letters []jetstream.DeadLetter
	require.NoError(t, json.Unmarshal([]byte(out), &letters))
	require.Len(t, letters, 1)
	require.Equal(t, 5, letters[0].Deliveries)

	var usage *UsageError
	_, err = run("retry", inbox)
	require.ErrorAs(t, err, &usage)
	_, err = run("retry", inbox, "--all", "1")
	require.ErrorAs(t, err, &usage)
	_, err = run("retry", inbox, "x")
	require.ErrorAs(t, err, &usage)

	out, err = run("retry", inbox, "--all")
	require.NoError(t, err)
	require.Contains(t, out, "retried 1 dead letter")
	s, err := js.Stream(ctx, source)
	require.NoError(t, err)
	msg, err := s.GetMsg(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, "t"+id+".PaymentReceived", msg.Subject)
	require.Equal(t, "msg-1", msg.Header.Get(integration.HeaderMessageID), "the message keeps its ID")
	require.Empty(t, msg.Header.Get(jetstream.HeaderDeadLetterError))
	require.JSONEq(t, `{"order":"o-1"}`, string(msg.Data))

	out, err = run("dead-letters", inbox)
	require.NoError(t, err)
	require.Contains(t, out, "has no dead letters")
	_, err = run("retry", "--stream", dlq, strconv.FormatUint(letters[0].Sequence, 10))
	require.True(t, errors.Is(err, jetstream.ErrNotDeadLetter), "%v", err)

	_, err = run("dead-letters", "--nats-url", "nats://127.0.0.1:1")
	require.ErrorIs(t, err, jetstream.ErrUnreachable)
}
