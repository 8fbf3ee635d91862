package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-es/cairn/cli"
)

// TestCommands checks that the binary offers the generators beside the
// operations commands, that its help says so, and that a bad name is a
// usage error (exit 2).
func TestCommands(t *testing.T) {
	root := cli.New(config())
	for _, path := range [][]string{{"new", "service"}, {"new", "context"}, {"new", "command"}, {"new", "sync"},
		{"migrate"}, {"projection"}, {"events"}, {"saga"}} {
		if c, _, err := root.Find(path); err != nil || c.Name() != path[len(path)-1] {
			t.Errorf("no command %q: %v", strings.Join(path, " "), err)
		}
	}
	if !strings.Contains(root.Short, "generate services") {
		t.Errorf("the root's description does not mention the generators: %q", root.Short)
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

// TestBuiltFromCheckout builds the binary as the README says (go install
// ./cmd/cairn builds it the same way) and checks that a service it makes
// uses this checkout through a replace directive. (A binary that finds
// neither a release version nor its checkout is refused: see
// internal/scaffold's TestDefaultCairn.)
func TestBuiltFromCheckout(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("this test runs the go command, which is not on PATH: %v", err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "cairn")
	// -buildvcs=auto, go build's default: in a git checkout the binary is
	// stamped with a pseudo-version, which no proxy serves.
	build(t, root, "-buildvcs=auto", "-o", bin, "./cmd/cairn")
	svc := filepath.Join(tmp, "shop")
	out, err := exec.Command(bin, "new", "service", "shop", "--module", "example.com/shop", "--dir", svc).CombinedOutput()
	if err != nil {
		t.Fatalf("cairn new service: %v\n%s", err, out)
	}
	gomod, err := os.ReadFile(filepath.Join(svc, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "replace github.com/cairn-es/cairn => " + filepath.ToSlash(root) + "\n"; !strings.Contains(string(gomod)+"\n", want) {
		t.Errorf("go.mod does not use the checkout (%q):\n%s", want, gomod)
	}
}

// build runs go build in dir, outside any workspace, with this toolchain.
func build(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("go", append([]string{"build"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
