package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-es/cairn/projection"
)

func (a *app) projectionCmd() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:     "projection",
		Aliases: []string{"projections"},
		Short:   "Inspect and operate projections",
	})
	cmd.AddCommand(a.listCmd(), a.statusCmd(), a.pauseCmd(true), a.pauseCmd(false), a.deadLettersCmd(), a.retryCmd())
	if a.cfg.Setup != nil {
		cmd.AddCommand(a.rebuildCmd(), a.resetCmd(), a.runCmd())
	}
	return cmd
}

func (a *app) listCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the projections this application registers and those the database knows",
		Args:  nArgs(0, 0, ""),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, _ []string) error {
			s, err := a.openManager(ctx, cmd, slog.LevelWarn)
			if err != nil {
				return err
			}
			defer s.close()
			all, err := s.mgr.StatusAll(ctx)
			if err != nil {
				return err
			}
			t := newTable(cmd.OutOrStdout(), "NAME", "VERSION", "STATE", "POLICY", "EVENT TYPES")
			for _, st := range all {
				version, policy, types := strconv.Itoa(st.Version), "-", "(not registered here)"
				if p, err := s.mgr.Projector(st.Name); err == nil {
					version, policy, types = strconv.Itoa(p.Version()), st.Policy, strings.Join(p.EventTypes(), ", ")
					if types == "" {
						types = "(all)"
					}
				}
				t.row(st.Name, version, string(st.State), policy, types)
			}
			return t.flush()
		}),
	}
}

func (a *app) statusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [NAME]",
		Short: "Show projections' checkpoint, lag, state, dead letters and errors",
		Long: "Show one projection, or all of them: registered in this application or known to the database.\n\n" +
			"--json prints the projection.Status fields: one object for NAME, else an array.\n" +
			"Lag counts the events of the projection's types between its checkpoint and the head;\n" +
			"for a projection not registered here it counts every event (lag_types_unknown), since only\n" +
			"the application's own binary knows the projection's types: the framework's cairn binary\n" +
			"reports more lag than the application's for a projection that handles some types only.\n" +
			"RUNNER is the session holding the projection's leader lock, the process applying it now;\n" +
			"none means no process applies it, whatever its state says.",
		Args: nArgs(0, 1, "NAME"),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			s, err := a.openManager(ctx, cmd, slog.LevelWarn)
			if err != nil {
				return err
			}
			defer s.close()
			var all []projection.Status
			if len(args) == 1 {
				st, err := s.mgr.Status(ctx, args[0])
				if err != nil {
					return unknownProjection(ctx, s.mgr, err, false)
				}
				if asJSON {
					return writeJSON(cmd.OutOrStdout(), st)
				}
				all = []projection.Status{st}
			} else {
				if all, err = s.mgr.StatusAll(ctx); err != nil {
					return err
				}
				if asJSON {
					return writeJSON(cmd.OutOrStdout(), all)
				}
			}
			return printStatus(cmd.OutOrStdout(), all, a.cfg.Setup != nil)
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printStatus(w io.Writer, all []projection.Status, hasSetup bool) error {
	if len(all) == 0 {
		_, err := fmt.Fprintln(w, "no projections")
		return err
	}
	t := newTable(w, "NAME", "STATE", "VERSION", "CHECKPOINT", "HEAD", "LAG", "DEAD LETTERS", "LAST APPLIED", "RUNNER")
	for _, st := range all {
		name := st.Name
		if st.LagTypesUnknown && hasSetup {
			name += " *"
		}
		lag := strconv.FormatInt(st.Lag, 10)
		if st.LagCapped {
			lag += "+"
		}
		last := "never"
		if st.LastAppliedAt != nil {
			last = ago(time.Duration(st.SinceLastApplied * float64(time.Second)))
		}
		runner := "none"
		if st.Runner != nil {
			runner = st.Runner.String()
		}
		t.row(name, string(st.State), strconv.Itoa(st.Version), st.Checkpoint.String(), st.Head.String(), lag,
			strconv.FormatInt(st.DeadLetters, 10), last, runner)
	}
	if err := t.flush(); err != nil {
		return err
	}
	printStatusNotes(w, all, hasSetup)
	for _, st := range all {
		if st.Error == "" {
			continue
		}
		at := ""
		if st.FailedPosition != nil {
			at = " at position " + st.FailedPosition.String()
		}
		fmt.Fprintf(w, "\n%s %s%s: %s\n", st.Name, st.State, at, st.Error)
	}
	return nil
}

// printStatusNotes explains what the table alone would mislead about: a
// lag counted over every event, and a projection meant to run that nothing
// runs.
func printStatusNotes(w io.Writer, all []projection.Status, hasSetup bool) {
	var unknownTypes, idle []string
	for _, st := range all {
		if st.LagTypesUnknown {
			unknownTypes = append(unknownTypes, st.Name)
		}
		if st.Runner == nil && (st.State == projection.Running || st.State == "new") {
			idle = append(idle, st.Name)
		}
	}
	switch {
	case len(unknownTypes) == 0:
	case hasSetup:
		fmt.Fprintln(w, "* not registered in this application: lag counts every event after the checkpoint, not only the projection's types, which this binary does not know")
	default:
		fmt.Fprintln(w, "lag counts every event after each checkpoint: this binary registers no projections, so it does not know their event types;\n"+
			"the application's own 'projection status' counts only each projection's types, and reports less lag for a projection that handles some types only")
	}
	if len(idle) > 0 {
		its := "their"
		if len(idle) == 1 {
			its = "its"
		}
		fmt.Fprintf(w, "no runner holds %s: nothing applies %s events until a process running the projections starts\n",
			strings.Join(idle, ", "), its)
	}
}

// unknownProjection adds the valid names to an unknown projection's error,
// so that its message holds the fix for a typo; any other error is returned
// as it is. registered limits the names to the projections this binary
// registers, for the commands that need their code.
func unknownProjection(ctx context.Context, mgr *projection.Manager, err error, registered bool) error {
	if !errors.Is(err, projection.ErrUnknownProjection) {
		return err
	}
	if registered {
		if names := mgr.Names(); len(names) > 0 {
			return fmt.Errorf("%w; projections registered in this application: %s", err, strings.Join(names, ", "))
		}
		return fmt.Errorf("%w; this application registers no projections", err)
	}
	names, lerr := mgr.KnownNames(ctx)
	switch {
	case lerr != nil:
		return fmt.Errorf("%w (listing the known projections failed too: %w)", err, lerr)
	case len(names) == 0:
		return fmt.Errorf("%w; no projection is registered in this application or known to the database", err)
	}
	return fmt.Errorf("%w; known projections: %s", err, strings.Join(names, ", "))
}

func (a *app) pauseCmd(pause bool) *cobra.Command {
	use, short, done := "resume NAME", "Let a paused or failed projection run again (a failed one retries its event)", "resumed"
	if pause {
		use, short, done = "pause NAME", "Stop a projection from applying events, in whichever process runs it", "paused"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  nArgs(1, 1, "NAME"),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			s, err := a.openManager(ctx, cmd, slog.LevelWarn)
			if err != nil {
				return err
			}
			defer s.close()
			if pause {
				err = s.mgr.Pause(ctx, args[0])
			} else {
				err = s.mgr.Resume(ctx, args[0])
			}
			if err != nil {
				return unknownProjection(ctx, s.mgr, err, false)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", done, args[0])
			return err
		}),
	}
}

func (a *app) deadLettersCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "dead-letters NAME",
		Short: "List the events a projection gave up on, in log order",
		Long:  "List a projection's dead letters in log order. --json prints an array of projection.DeadLetter.",
		Args:  nArgs(1, 1, "NAME"),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			s, err := a.openManager(ctx, cmd, slog.LevelWarn)
			if err != nil {
				return err
			}
			defer s.close()
			if _, err := s.mgr.Status(ctx, args[0]); err != nil { // unknown projection
				return unknownProjection(ctx, s.mgr, err, false)
			}
			letters, err := s.mgr.DeadLetters(ctx, args[0])
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				if letters == nil {
					letters = []projection.DeadLetter{}
				}
				return writeJSON(w, letters)
			}
			if len(letters) == 0 {
				_, err := fmt.Fprintf(w, "%s has no dead letters\n", args[0])
				return err
			}
			t := newTable(w, "ID", "POSITION", "EVENT", "TYPE", "ATTEMPTS", "LAST FAILED", "ERROR")
			for _, d := range letters {
				t.row(strconv.FormatInt(d.ID, 10), d.Position.String(), fmt.Sprintf("%s@%d", d.StreamID, d.StreamVersion),
					d.EventType, strconv.Itoa(d.Attempts), d.LastFailedAt.Local().Format(time.DateTime), truncate(d.Error, 100))
			}
			if err := t.flush(); err != nil {
				return err
			}
			_, err = fmt.Fprintf(w, "retry with: %s projection retry %s --all (or IDs)\n", cmd.Root().Name(), args[0])
			return err
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) retryCmd() *cobra.Command {
	var all bool
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "retry NAME (--all | ID...)",
		Short: "Re-apply dead letters to the live model, in log order",
		Long: "Re-apply the given dead letters (IDs from dead-letters), or all of them with --all, in log order.\n" +
			"Each success removes its dead letter; the first failure stops the retry and is recorded on its dead letter.\n" +
			"A projection whose code this command line does not have (an integration publisher, another service's\n" +
			"projection) is retried by the process running it: the command asks, and waits up to --wait for the answer.",
		Args: nArgs(1, -1, "NAME"),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			name, rest := args[0], args[1:]
			if all == (len(rest) > 0) {
				return Usagef(cmd, "%s: give either --all or dead-letter IDs", cmd.CommandPath())
			}
			ids := make([]int64, len(rest))
			for i, arg := range rest {
				id, err := strconv.ParseInt(arg, 10, 64)
				if err != nil || id <= 0 {
					return Usagef(cmd, "%s: %q is not a dead-letter ID", cmd.CommandPath(), arg)
				}
				ids[i] = id
			}
			s, err := a.openManager(ctx, cmd, slog.LevelWarn)
			if err != nil {
				return err
			}
			defer s.close()
			n, err := s.mgr.Retry(ctx, name, ids...)
			if errors.Is(err, projection.ErrUnknownProjection) {
				return requestRetry(ctx, cmd, s.mgr, name, ids, wait)
			}
			if err != nil && n > 0 {
				return fmt.Errorf("retried %s of %s, then: %w", plural(int64(n), "dead letter", "dead letters"), name, err)
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "retried %s of %s\n", plural(int64(n), "dead letter", "dead letters"), name)
			return err
		}),
	}
	cmd.Flags().BoolVar(&all, "all", false, "retry every dead letter of the projection")
	cmd.Flags().DurationVar(&wait, "wait", 30*time.Second, "for a projection run by another process: how long to wait for it to retry")
	return cmd
}

// requestRetry has the process running the projection retry its dead
// letters (projection.Manager.RequestRetry) and waits for the outcome.
func requestRetry(ctx context.Context, cmd *cobra.Command, mgr *projection.Manager, name string, ids []int64, wait time.Duration) error {
	known, err := mgr.KnownNames(ctx)
	if err != nil {
		return err
	}
	if !slices.Contains(known, name) {
		// Known neither here nor to the database: name what this
		// application registers, when it registers anything.
		return unknownProjection(ctx, mgr, fmt.Errorf("%w: %q", projection.ErrUnknownProjection, name), len(mgr.Names()) > 0)
	}
	marked, err := mgr.RequestRetry(ctx, name, ids...)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if len(marked) == 0 {
		_, err = fmt.Fprintf(out, "%s has no dead letters\n", name)
		return err
	}
	if _, err := fmt.Fprintf(out, "asked the process running %s to retry %s\n", name, plural(int64(len(marked)), "dead letter", "dead letters")); err != nil {
		return err
	}
	deadline := time.Now().Add(wait)
	for {
		pending, err := mgr.PendingRetries(ctx, name, marked)
		if err != nil {
			return err
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: no process running %s took the request within %s; it stays asked for, and %s retries it when it runs",
				ErrRetryPending, name, wait, name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	letters, err := mgr.DeadLetters(ctx, name)
	if err != nil {
		return err
	}
	var left []projection.DeadLetter
	for _, d := range letters {
		if slices.Contains(marked, d.ID) {
			left = append(left, d)
		}
	}
	done := len(marked) - len(left)
	if len(left) > 0 {
		return fmt.Errorf("retried %s of %s; %d still dead-lettered, the first (%d) with: %s",
			plural(int64(done), "dead letter", "dead letters"), name, len(left), left[0].ID, left[0].Error)
	}
	_, err = fmt.Fprintf(out, "retried %s of %s\n", plural(int64(done), "dead letter", "dead letters"), name)
	return err
}

func (a *app) resetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reset NAME",
		Short: "Empty a projection's live model and dead letters and replay it from the start",
		Long: "Empty the live read model and the dead letters and set the checkpoint to the start, in one transaction;\n" +
			"the running daemon then replays the log into it. Readers see an empty model meanwhile:\n" +
			"'projection rebuild' replaces a model without emptying it first.",
		Args: nArgs(1, 1, "NAME"),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			s, err := a.openManager(ctx, cmd, slog.LevelWarn)
			if err != nil {
				return err
			}
			defer s.close()
			if err := s.mgr.Reset(ctx, args[0]); err != nil {
				return unknownProjection(ctx, s.mgr, err, true)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "reset %s: the model is empty and replays from the start of the log\n", args[0])
			return err
		}),
	}
}

func (a *app) runCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run the projection daemon until interrupted (SIGINT or SIGTERM)",
		Long: "Apply every registered projection, following the live log, until SIGINT or SIGTERM;\n" +
			"then finish the batches in flight and exit. Many processes may run at once:\n" +
			"each projection is applied by one of them and taken over when it dies.",
		Args: nArgs(0, 0, ""),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, _ []string) error {
			s, err := a.openManager(ctx, cmd, slog.LevelInfo)
			if err != nil {
				return err
			}
			defer s.close()
			names := s.mgr.Names()
			if len(names) == 0 {
				return errors.New("no projections registered: nothing to run")
			}
			errw := cmd.ErrOrStderr()
			fmt.Fprintf(errw, "running %s: %s (stop with Ctrl-C)\n", plural(int64(len(names)), "projection", "projections"), strings.Join(names, ", "))
			if err := s.mgr.Run(ctx); err != nil {
				return err
			}
			fmt.Fprintln(errw, "stopped")
			return nil
		}),
	}
}

func (a *app) rebuildCmd() *cobra.Command {
	var (
		inPlace, verify, asJSON bool
		progressMode            string
		interval                time.Duration
	)
	cmd := &cobra.Command{
		Use:   "rebuild NAME",
		Short: "Replay the whole log into a projection (blue/green by default)",
		Long: "Replay the whole log into the projection. By default a shadow copy is built while the live model\n" +
			"keeps serving, then swapped in with its checkpoint in one transaction; an interrupted rebuild\n" +
			"leaves the live model untouched.\n\n" +
			"--in-place replays into the live model in one transaction (readers wait meanwhile).\n" +
			"--verify builds a copy up to the live checkpoint and compares the two row by row without\n" +
			"swapping; it prints the differences and exits with status 3 when there are any.\n\n" +
			"Progress goes to standard error: a bar on a terminal, else a line every --progress-interval.",
		Args: nArgs(1, 1, "NAME"),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if inPlace && verify {
				return Usagef(cmd, "%s: --in-place and --verify exclude each other", cmd.CommandPath())
			}
			name := args[0]
			s, err := a.openManager(ctx, cmd, slog.LevelWarn)
			if err != nil {
				return err
			}
			defer s.close()
			if _, err := s.mgr.Projector(name); err != nil {
				return unknownProjection(ctx, s.mgr, err, true)
			}
			prog, err := newProgress(cmd, name, progressMode, interval)
			if err != nil {
				return err
			}
			report, err := s.mgr.Rebuild(ctx, name, projection.RebuildOptions{InPlace: inPlace, Verify: verify, Progress: prog.update})
			prog.finish(err == nil)
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("rebuild of %s interrupted; the live model is untouched: %w", name, ctx.Err())
				}
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				if err := writeJSON(w, report); err != nil {
					return err
				}
			} else if err := printReport(w, report); err != nil {
				return err
			}
			if !report.Identical() {
				return fmt.Errorf("%s: %w (%s)", name, ErrModelsDiffer, plural(int64(len(report.Differences)), "table differs", "tables differ"))
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.BoolVar(&inPlace, "in-place", false, "replay into the live model in one transaction instead of a shadow copy")
	f.BoolVar(&verify, "verify", false, "compare a fresh rebuild with the live model instead of swapping; exit 3 on differences")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.StringVar(&progressMode, "progress", "auto", "progress display: auto (bar on a terminal, else log lines), bar, log or none")
	f.DurationVar(&interval, "progress-interval", 5*time.Second, "time between progress log lines")
	return cmd
}

func printReport(w io.Writer, r projection.RebuildReport) error {
	d := r.Duration.Round(time.Millisecond)
	switch {
	case r.Mode == "verify" && r.Identical():
		_, err := fmt.Fprintf(w, "verified %s: the live model matches a fresh rebuild of %s up to position %s (%s)\n",
			r.Projection, plural(r.Events, "event", "events"), r.Position, d)
		return err
	case r.Mode == "verify":
		fmt.Fprintf(w, "verified %s: the live model differs from a fresh rebuild of %s up to position %s (%s)\n",
			r.Projection, plural(r.Events, "event", "events"), r.Position, d)
		for _, diff := range r.Differences {
			switch {
			case diff.MissingLive:
				fmt.Fprintf(w, "  table %s: only in the rebuilt model\n", diff.Table)
			case diff.MissingShadow:
				fmt.Fprintf(w, "  table %s: only in the live model\n", diff.Table)
			default:
				fmt.Fprintf(w, "  table %s: %s only in the live model, %s only in the rebuilt one\n", diff.Table,
					plural(diff.OnlyLive, "row", "rows"), plural(diff.OnlyRebuilt, "row", "rows"))
			}
			for _, s := range diff.Samples {
				fmt.Fprintf(w, "    %s\n", s)
			}
		}
		return nil
	default:
		_, err := fmt.Fprintf(w, "rebuilt %s (%s): %s up to position %s in %s\n",
			r.Projection, r.Mode, plural(r.Events, "event", "events"), r.Position, d)
		return err
	}
}
