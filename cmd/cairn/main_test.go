package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cairn-es/cairn/cli"
)

// TestCommands checks that the binary offers the generators beside the
// operations commands, and that a bad name is a usage error (exit 2).
func TestCommands(t *testing.T) {
	root := cli.New(config())
	for _, path := range [][]string{{"new", "service"}, {"new", "context"}, {"new", "command"}, {"migrate"}, {"projection"}} {
		if c, _, err := root.Find(path); err != nil || c.Name() != path[len(path)-1] {
			t.Errorf("no command %q: %v", strings.Join(path, " "), err)
		}
	}
	root = cli.New(config())
	var errOut bytes.Buffer
	root.SetArgs([]string{"new", "service", "Not A Name", "--dry-run"})
	root.SetOut(&bytes.Buffer{})
	root.SetErr(&errOut)
	if code := cli.ExitCode(root.Execute()); code != 2 {
		t.Errorf("exit %d, want 2; stderr: %s", code, errOut.String())
	}
	if !strings.Contains(errOut.String(), "invalid service name") {
		t.Errorf("stderr: %s", errOut.String())
	}
}
