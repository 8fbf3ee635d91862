package app

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/cairn-es/cairn/cli"
	"github.com/cairn-es/cairn/projection"
)

// CLI returns the configuration of the embedded command line (package cli)
// for a service made of modules: its projection commands know the modules'
// projectors. commands are the service's own (serve, say).
func CLI(name string, modules []Module, commands ...*cobra.Command) cli.Config {
	return cli.Config{
		Name:     name,
		Short:    "Run and operate " + name,
		Commands: commands,
		Setup: func(ctx context.Context, m *projection.Manager) error {
			// The modules register everything; only the projectors on m
			// matter to the command line, so the rest is assembled
			// around m's store and then dropped.
			_, err := registerOn(m, modules)
			return err
		},
	}
}
