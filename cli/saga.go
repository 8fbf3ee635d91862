package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-es/cairn/saga"
)

func (a *app) sagaCmd() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:     "saga",
		Aliases: []string{"sagas"},
		Short:   "Inspect saga instances: their state, commands and timeouts",
	})
	cmd.AddCommand(a.sagaListCmd(), a.sagaShowCmd())
	return cmd
}

func (a *app) sagaListCmd() *cobra.Command {
	var (
		opts   saga.ListOptions
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List saga instances, most recently updated first, with a summary per saga",
		Long: "List saga instances, most recently updated first (--limit, default 50), filtered by\n" +
			"--saga and --status (active, completed or failed), after a summary per saga: instances\n" +
			"by status, commands waiting to be sent and dead, the oldest waiting command's age, timeouts.\n\n" +
			"--json prints {\"stats\": [...], \"instances\": [...]}.",
		Args: nArgs(0, 0, ""),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, _ []string) error {
			switch opts.Status {
			case "", saga.StatusActive, saga.StatusCompleted, saga.StatusFailed:
			default:
				return Usagef(cmd, "--status must be active, completed or failed, not %q", opts.Status)
			}
			s, err := a.openStore(ctx, cmd, slog.LevelWarn)
			if err != nil {
				return err
			}
			defer s.close()
			insp := saga.NewInspector(s.db)
			var names []string
			if opts.Saga != "" {
				names = []string{opts.Saga}
			}
			stats, err := insp.Stats(ctx, names...)
			if err != nil {
				return err
			}
			list, err := insp.List(ctx, opts)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"stats": stats, "instances": list})
			}
			t := newTable(cmd.OutOrStdout(), "SAGA", "ACTIVE", "COMPLETED", "FAILED", "PENDING CMDS", "DEAD CMDS", "OLDEST PENDING", "TIMEOUTS")
			for _, st := range stats {
				t.row(st.Saga, n(st.Instances[saga.StatusActive]), n(st.Instances[saga.StatusCompleted]), n(st.Instances[saga.StatusFailed]),
					n(st.Commands["pending"]), n(st.Commands["dead"]),
					(time.Duration(st.OldestPendingSeconds * float64(time.Second))).Round(time.Millisecond).String(), n(st.Timeouts))
			}
			if err := t.flush(); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout())
			t = newTable(cmd.OutOrStdout(), "SAGA", "ID", "STATUS", "OUTCOME", "PENDING", "DEAD", "UPDATED")
			for _, in := range list {
				t.row(in.Saga, in.ID, in.Status, truncate(in.Outcome, 40), strconv.Itoa(in.PendingCommands), strconv.Itoa(in.DeadCommands),
					in.UpdatedAt.UTC().Format(time.RFC3339))
			}
			return t.flush()
		}),
	}
	f := cmd.Flags()
	f.StringVar(&opts.Saga, "saga", "", "only this saga")
	f.StringVar(&opts.Status, "status", "", "only instances in this status: active, completed or failed")
	f.IntVar(&opts.Limit, "limit", 50, "at most this many instances")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) sagaShowCmd() *cobra.Command {
	var (
		sagaName string
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one saga instance: state, compensations, commands with their delivery, timeouts",
		Args:  nArgs(1, 1, "ID"),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			s, err := a.openStore(ctx, cmd, slog.LevelWarn)
			if err != nil {
				return err
			}
			defer s.close()
			d, err := saga.NewInspector(s.db).Show(ctx, sagaName, args[0])
			if errors.Is(err, saga.ErrInstanceNotFound) {
				return fmt.Errorf("no saga instance %q (saga list shows the instances)", args[0])
			}
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), d)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "saga:           %s\ninstance:       %s\nstatus:         %s\n", d.Saga, d.ID, d.Status)
			if d.Outcome != "" {
				fmt.Fprintf(w, "outcome:        %s\n", d.Outcome)
			}
			fmt.Fprintf(w, "correlation:    %s\nstarted:        %s\nupdated:        %s\ncompensations:  %d registered\nstate:          %s\n\n",
				d.CorrelationID, d.StartedAt.UTC().Format(time.RFC3339Nano), d.UpdatedAt.UTC().Format(time.RFC3339Nano), d.Compensations, d.State)
			t := newTable(w, "COMMAND", "ID", "STATUS", "ATTEMPTS", "ERROR")
			for _, c := range d.Commands {
				t.row(c.Type, c.CommandID, c.Status, strconv.Itoa(c.Attempts), truncate(c.Error, 60))
			}
			if err := t.flush(); err != nil {
				return err
			}
			if len(d.Timeouts) > 0 {
				fmt.Fprintln(w)
				t = newTable(w, "TIMEOUT", "DUE")
				for _, to := range d.Timeouts {
					due := fmt.Sprintf("%s after %s is sent", to.After, to.AfterCommand)
					if to.DueAt != nil {
						due = to.DueAt.UTC().Format(time.RFC3339Nano)
					}
					t.row(to.Name, due)
				}
				return t.flush()
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&sagaName, "saga", "", "the saga, when several have an instance with this ID")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func n(v int64) string { return strconv.FormatInt(v, 10) }
