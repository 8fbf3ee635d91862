package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cairn-es/cairn/migrations"
)

func (a *app) migrateCmd() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "migrate",
		Short: "Apply or inspect Cairn's schema migrations",
	})
	cmd.AddCommand(a.migrateUpCmd(), a.migrateStatusCmd())
	return cmd
}

func (a *app) migrateUpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "up",
		Short: "Apply every pending migration to --schema, creating it if needed (idempotent)",
		Args:  nArgs(0, 0, ""),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, _ []string) error {
			s, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer s.close()
			before, err := a.migrationStatus(ctx, s.pool, a.schema)
			if err != nil {
				return err
			}
			if err := migrations.UpPool(ctx, s.pool, a.schema, a.cfg.Migrations...); err != nil {
				return err
			}
			after, err := a.migrationStatus(ctx, s.pool, a.schema)
			if err != nil {
				return err
			}
			if before.Current == after.Current {
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "schema %s: up to date at version %d\n", a.schema, after.Current)
			} else {
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "schema %s: migrated from version %d to %d\n", a.schema, before.Current, after.Current)
			}
			return err
		}),
	}
}

// migrationJSON is migrate status --json.
type migrationJSON struct {
	migrations.Status
	UpToDate bool `json:"up_to_date"`
}

func (a *app) migrateStatusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show how far --schema is migrated (changes nothing)",
		Long:  "Show the schema's migration version and the latest one.\n--json prints {schema, current, latest, up_to_date}.",
		Args:  nArgs(0, 0, ""),
		RunE: a.action(func(ctx context.Context, cmd *cobra.Command, _ []string) error {
			s, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer s.close()
			st, err := a.migrationStatus(ctx, s.pool, a.schema)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			switch {
			case asJSON:
				return writeJSON(w, migrationJSON{Status: st, UpToDate: st.UpToDate()})
			case st.UpToDate():
				_, err = fmt.Fprintf(w, "schema %s: version %d of %d, up to date\n", st.Schema, st.Current, st.Latest)
			default:
				_, err = fmt.Fprintf(w, "schema %s: version %d of %d, %d pending; run '%s migrate up'\n",
					st.Schema, st.Current, st.Latest, st.Latest-st.Current, cmd.Root().Name())
			}
			return err
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
