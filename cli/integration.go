package cli

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/cairn-es/cairn/integration/jetstream"
)

// integrationCmd groups the commands over the integration inboxes' dead
// letters, kept by NATS JetStream. A publisher's dead letters are its
// projection's: `projection dead-letters publish_NAME`.
func (a *app) integrationCmd() *cobra.Command {
	var url string
	cmd := group(&cobra.Command{
		Use:   "integration",
		Short: "Inspect and retry the dead letters of integration inboxes (NATS JetStream)",
		Long: "Inspect and retry the messages integration inboxes gave up on, kept in dead-letter streams on NATS JetStream.\n" +
			"The server is --nats-url, else $NATS_URL, else " + jetstream.DefaultURL + ".\n" +
			"A publisher is a projection: its status, lag and dead letters are under `projection` (publish_NAME).",
	})
	cmd.PersistentFlags().StringVar(&url, "nats-url", "", "NATS server URL (default $NATS_URL, else "+jetstream.DefaultURL+")")
	open := func() (*nats.Conn, natsjs.JetStream, error) {
		if url == "" {
			url = jetstream.URL()
		}
		nc, err := jetstream.Connect(url, nats.Name("cairn cli"), nats.MaxReconnects(0))
		if err != nil {
			return nil, nil, err
		}
		js, err := natsjs.New(nc)
		if err != nil {
			nc.Close()
			return nil, nil, err
		}
		return nc, js, nil
	}
	cmd.AddCommand(a.integrationDeadLettersCmd(open), a.integrationRetryCmd(open))
	return cmd
}

// deadLetterStream is the stream of an inbox's dead letters: --stream, or
// the default of the consumer named by the first argument, which it
// consumes.
func deadLetterStream(stream string, args []string) (string, []string) {
	if stream != "" {
		return stream, args
	}
	return jetstream.DeadLetterStreamName(args[0]), args[1:]
}

func (a *app) integrationDeadLettersCmd(open func() (*nats.Conn, natsjs.JetStream, error)) *cobra.Command {
	var (
		asJSON bool
		stream string
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "dead-letters [INBOX]",
		Short: "List an inbox's dead letters, oldest first, or every dead-letter stream",
		Long: "With INBOX (the durable consumer's name, by default the inbox's) or --stream, list the dead letters\n" +
			"in that dead-letter stream (default DLQ_INBOX), oldest first, at most --limit. Without, list the\n" +
			"dead-letter streams and their message counts.\n\n" +
			"--json prints an array of jetstream.DeadLetter (or of jetstream.DeadLetterStream).",
		Args: nArgs(0, 1, "INBOX"),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			nc, js, err := open()
			if err != nil {
				return err
			}
			defer nc.Close()
			if len(args) == 0 && stream == "" {
				return listDeadLetterStreams(ctx, cmd, js, asJSON)
			}
			name, _ := deadLetterStream(stream, args)
			letters, err := jetstream.DeadLetters(ctx, js, name, limit)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				if letters == nil {
					letters = []jetstream.DeadLetter{}
				}
				return writeJSON(w, letters)
			}
			if len(letters) == 0 {
				_, err := fmt.Fprintf(w, "%s has no dead letters\n", name)
				return err
			}
			t := newTable(w, "SEQ", "TYPE", "MESSAGE ID", "KEY", "FROM", "DELIVERIES", "DEAD", "ERROR")
			for _, d := range letters {
				t.row(strconv.FormatUint(d.Sequence, 10), fmt.Sprintf("%s v%d", d.Type, d.Version), d.MessageID, d.Key,
					fmt.Sprintf("%s#%d", d.Stream, d.StreamSequence), strconv.Itoa(d.Deliveries),
					ago(time.Since(d.DeadAt)), truncate(d.Error, 100))
			}
			if err := t.flush(); err != nil {
				return err
			}
			retry := cmd.Root().Name() + " integration retry"
			if stream != "" {
				retry += " --stream " + stream
			} else {
				retry += " " + args[0]
			}
			_, err = fmt.Fprintf(w, "retry with: %s --all (or SEQs)\n", retry)
			return err
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVar(&stream, "stream", "", "the dead-letter stream (default DLQ_INBOX)")
	cmd.Flags().IntVar(&limit, "limit", 100, "list at most this many (0: all)")
	return cmd
}

func listDeadLetterStreams(ctx context.Context, cmd *cobra.Command, js natsjs.JetStream, asJSON bool) error {
	streams, err := jetstream.DeadLetterStreams(ctx, js)
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	if asJSON {
		if streams == nil {
			streams = []jetstream.DeadLetterStream{}
		}
		return writeJSON(w, streams)
	}
	if len(streams) == 0 {
		_, err := fmt.Fprintln(w, "no dead-letter streams")
		return err
	}
	t := newTable(w, "STREAM", "MESSAGES", "DESCRIPTION")
	for _, s := range streams {
		t.row(s.Name, strconv.FormatUint(s.Messages, 10), s.Description)
	}
	return t.flush()
}

func (a *app) integrationRetryCmd(open func() (*nats.Conn, natsjs.JetStream, error)) *cobra.Command {
	var (
		all    bool
		stream string
	)
	cmd := &cobra.Command{
		Use:   "retry (INBOX | --stream STREAM) (--all | SEQ...)",
		Short: "Publish dead letters again to the subjects they came from",
		Long: "Publish the given dead letters (SEQs from dead-letters), or all of them with --all, oldest first, to\n" +
			"the subjects they were consumed from, and delete them from the dead-letter stream. They keep their\n" +
			"message IDs, so the inbox dispatches the same command IDs (a command that did commit is answered\n" +
			"from the command log). Every consumer of the subject receives them again. INBOX names the stream\n" +
			"DLQ_INBOX; --stream names it instead.",
		Args: nArgs(0, -1, ""),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if stream == "" && len(args) == 0 {
				return Usagef(cmd, "%s: missing INBOX (or --stream)", cmd.CommandPath())
			}
			name, rest := deadLetterStream(stream, args)
			if all == (len(rest) > 0) {
				return Usagef(cmd, "%s: give either --all or dead-letter SEQs", cmd.CommandPath())
			}
			seqs := make([]uint64, len(rest))
			for i, arg := range rest {
				seq, err := strconv.ParseUint(arg, 10, 64)
				if err != nil || seq == 0 {
					return Usagef(cmd, "%s: %q is not a dead-letter SEQ", cmd.CommandPath(), arg)
				}
				seqs[i] = seq
			}
			nc, js, err := open()
			if err != nil {
				return err
			}
			defer nc.Close()
			if all {
				letters, err := jetstream.DeadLetters(ctx, js, name, 0)
				if err != nil {
					return err
				}
				for _, d := range letters {
					seqs = append(seqs, d.Sequence)
				}
			}
			w := cmd.OutOrStdout()
			for i, seq := range seqs {
				d, err := jetstream.RetryDeadLetter(ctx, js, name, seq)
				if err != nil {
					if i > 0 {
						return fmt.Errorf("retried %s of %s, then: %w", plural(int64(i), "dead letter", "dead letters"), name, err)
					}
					return err
				}
				fmt.Fprintf(w, "%d: %s %s -> %s\n", seq, d.Type, d.MessageID, d.Subject)
			}
			_, err = fmt.Fprintf(w, "retried %s of %s\n", plural(int64(len(seqs)), "dead letter", "dead letters"), name)
			return err
		}),
	}
	cmd.Flags().BoolVar(&all, "all", false, "retry every dead letter of the stream")
	cmd.Flags().StringVar(&stream, "stream", "", "the dead-letter stream (default DLQ_INBOX)")
	return cmd
}
