package scaffold

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-es/cairn/app"
	"github.com/cairn-es/cairn/internal/pgconnect"
)

// TestGeneratedCodeBuildsAndPasses generates a service and builds, vets
// and tests it with the go command after each step: the bare service, then
// a context, then a second context with one more of every piece; the last
// step runs the service's own make test. With no flag, the service uses the
// checkout this test runs in (a replace directive), as a binary built from
// it does. The generated tests use the real PostgreSQL (DATABASE_URL, or
// the local default).
func TestGeneratedCodeBuildsAndPasses(t *testing.T) {
	for _, tool := range []string{"go", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("this test runs %s, which is not on PATH: %v", tool, err)
		}
	}
	requirePostgres(t)
	root := repoRoot(t)
	svc := filepath.Join(t.TempDir(), "shop")

	mustCairn(t, "new", "service", "shop", "--module", "example.com/shop", "--dir", svc)
	gomod, err := os.ReadFile(filepath.Join(svc, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "replace " + cairnModule + " => " + filepath.ToSlash(root) + "\n"; !strings.Contains(string(gomod), want) {
		t.Fatalf("go.mod does not use this checkout (%q):\n%s", want, gomod)
	}
	checkService(t, svc)

	mustCairn(t, "new", "context", "billing", "--aggregate", "Invoice", "--dir", svc)
	checkService(t, svc)

	mustCairn(t, "new", "context", "shipping", "--dir", svc)
	mustCairn(t, "new", "command", "ArchiveInvoice", "--context", "billing", "--dir", svc)
	mustCairn(t, "new", "event", "InvoiceReminded", "--context", "billing", "--dir", svc)
	mustCairn(t, "new", "projection", "invoice_activity", "--context", "billing", "--dir", svc)
	mustCairn(t, "new", "query", "ListInvoiceActivity", "--context", "billing", "--projection", "invoice_activity", "--dir", svc)
	mustCairn(t, "new", "aggregate", "Payment", "--context", "billing", "--dir", svc)
	goCmd(t, svc, "mod", "tidy")
	goCmd(t, svc, "vet", "./...")
	out := run(t, svc, "make", "test")
	for _, pkg := range []string{"example.com/shop\t", "example.com/shop/billing\t", "example.com/shop/shipping\t"} {
		if !strings.Contains(out, "ok  \t"+pkg) {
			t.Errorf("go test did not pass %s:\n%s", strings.TrimSpace(pkg), out)
		}
	}
	mods, err := os.ReadFile(filepath.Join(svc, "modules.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mods), "billing.Module{},\n\t\tshipping.Module{},") {
		t.Errorf("modules.go does not list both contexts:\n%s", mods)
	}
	// Generating again from the same directives changes nothing.
	before := hashTree(t, svc)
	if out := mustCairn(t, "new", "sync", "--dir", svc); strings.Contains(out, "update") {
		t.Errorf("sync rewrote files:\n%s", out)
	}
	if hashTree(t, svc) != before {
		t.Error("sync changed the tree")
	}
	checkStale(t, svc)
	checkMakeRun(t, svc)
}

// checkStale adds an event by hand, directive and all, without running
// cairn new sync: the service builds and vets, but its tests fail naming the
// fix; after the sync, run as the message says through go run (cairn may
// not be on PATH), they pass.
func checkStale(t *testing.T, svc string) {
	t.Helper()
	src := "package billing\n\n// InvoiceDisputed records a dispute.\n//\n//cairn:event\ntype InvoiceDisputed struct {\n\tInvoiceID string `json:\"invoice_id\"`\n}\n"
	if err := os.WriteFile(filepath.Join(svc, "billing", "event_invoice_disputed.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	goCmd(t, svc, "vet", "./...")
	out, err := runErr(svc, "go", "test", "-count=1", "./billing/")
	for _, want := range []string{"cairn_gen.go of package billing is stale", "new or changed: InvoiceDisputed //cairn:event\n", "Run `cairn new sync`"} {
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("go test with a stale cairn_gen.go: %v, want a failure saying %q:\n%s", err, want, out)
		}
	}
	goCmd(t, svc, "run", cairnModule+"/cmd/cairn", "new", "sync")
	goCmd(t, svc, "test", "-count=1", "./billing/")
}

// checkService tidies, vets and tests the service in dir, and returns the
// output of go test.
func checkService(t *testing.T, dir string) string {
	t.Helper()
	goCmd(t, dir, "mod", "tidy")
	goCmd(t, dir, "vet", "./...")
	return goCmd(t, dir, "test", "-count=1", "./...")
}

// goEnv is the environment of the go commands run in generated modules:
// the test's own (its module cache, proxy and checksum settings, since a
// fresh cache must be filled from the proxy), outside any workspace, with
// this toolchain.
func goEnv() []string {
	return append(os.Environ(), "GOWORK=off", "GOTOOLCHAIN=local")
}

// goCmd runs the go command in dir and fails the test on error.
func goCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	return run(t, dir, "go", args...)
}

// run runs a command in dir with goEnv and fails the test on error.
func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	out, err := runErr(dir, name, args...)
	if err != nil {
		t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), dir, err, out)
	}
	return out
}

// runErr runs a command in dir with goEnv and returns its combined output.
func runErr(dir, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = goEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// requirePostgres fails the test, saying why, when PostgreSQL does not
// answer: the generated tests need it.
func requirePostgres(t *testing.T) {
	t.Helper()
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		url = app.DefaultDatabaseURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err == nil {
		err = conn.Ping(ctx)
		conn.Close(ctx)
	}
	if err != nil {
		// Masked: DATABASE_URL may hold a password, which a CI log must not show.
		t.Fatalf("PostgreSQL is not reachable (DATABASE_URL=%q): %v\n"+
			"The generated tests this test runs need a PostgreSQL server they may create schemas on: "+
			"run `make test`, which starts one when none answers, or set DATABASE_URL.", pgconnect.Target{URL: url}.Masked(), err)
	}
}

// TestContextOutsideService generates a context in a directory of a module
// that has no generated modules.go (as in this repository's examples), adds
// a piece to it, registers it as the printed lines say in a hand-written
// module list, and vets and builds the module.
func TestContextOutsideService(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("this test runs the go command, which is not on PATH: %v", err)
	}
	root := repoRoot(t)
	repo := t.TempDir()
	gomod := "module example.com/repo\n\ngo " + goVersion + "\n\nrequire " + cairnModule + " " + unknownVersion +
		"\n\nreplace " + cairnModule + " => " + filepath.ToSlash(root) + "\n"
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	shop := filepath.Join(repo, "examples", "shop")
	const list = `package shop

import (
	"github.com/cairn-es/cairn/app"
	// imports
)

// Config configures the shop.
type Config struct{ Prefix string }

// Modules returns the shop's modules.
func Modules(cfg Config) []app.Module {
	return []app.Module{
		// modules
	}
}
`
	for file, content := range map[string]string{
		filepath.Join(repo, "go.mod"):  gomod,
		filepath.Join(repo, "go.sum"):  string(sum),
		filepath.Join(shop, "shop.go"): list,
	} {
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	out := mustCairn(t, "new", "context", "billing", "--dir", shop)
	wantImport := `  import "example.com/repo/examples/shop/billing"` + "\n"
	wantModule := "  billing.Module{Prefix: cfg.Prefix},\n"
	if !strings.HasSuffix(out, wantImport+wantModule) {
		t.Fatalf("cairn new context billing prints, at the end:\n%s\nwant:\n%s%s", out, wantImport, wantModule)
	}
	if _, err := os.Stat(filepath.Join(repo, "modules.go")); err == nil {
		t.Error("a modules.go was written")
	}
	mustCairn(t, "new", "command", "ArchiveBilling", "--context", "billing", "--dir", shop)
	mustCairn(t, "new", "event", "BillingReminded", "--context", "billing", "--dir", shop)
	// Inside the context's own directory, --context names it.
	mustCairn(t, "new", "projection", "billing_activity", "--context", "billing", "--dir", filepath.Join(shop, "billing"))

	src := strings.Replace(list, "// imports", strings.TrimPrefix(strings.TrimSpace(wantImport), "import "), 1)
	src = strings.Replace(src, "// modules", strings.TrimSpace(wantModule), 1)
	if err := os.WriteFile(filepath.Join(shop, "shop.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	goCmd(t, repo, "mod", "tidy")
	goCmd(t, repo, "vet", "./...")
	goCmd(t, repo, "build", "./...")
}
