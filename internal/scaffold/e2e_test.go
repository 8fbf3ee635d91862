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
)

// TestGeneratedCodeBuildsAndPasses generates a service against this
// checkout (--cairn-replace) and builds, vets and tests it with the go
// command after each step: the bare service, then a context, then a second
// context with one more of every piece. The generated tests use the real
// PostgreSQL (DATABASE_URL, or the local default).
func TestGeneratedCodeBuildsAndPasses(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("this test runs the go command, which is not on PATH: %v", err)
	}
	requirePostgres(t)
	root := repoRoot(t)
	svc := filepath.Join(t.TempDir(), "shop")

	mustCairn(t, "new", "service", "shop", "--module", "example.com/shop", "--dir", svc, "--cairn-replace", root)
	checkService(t, svc)

	mustCairn(t, "new", "context", "billing", "--aggregate", "Invoice", "--dir", svc)
	checkService(t, svc)

	mustCairn(t, "new", "context", "shipping", "--dir", svc)
	mustCairn(t, "new", "command", "ArchiveInvoice", "--context", "billing", "--dir", svc)
	mustCairn(t, "new", "event", "InvoiceReminded", "--context", "billing", "--dir", svc)
	mustCairn(t, "new", "projection", "invoice_activity", "--context", "billing", "--dir", svc)
	mustCairn(t, "new", "query", "ListInvoiceActivity", "--context", "billing", "--projection", "invoice_activity", "--dir", svc)
	mustCairn(t, "new", "aggregate", "Payment", "--context", "billing", "--dir", svc)
	out := checkService(t, svc)
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
}

// checkService tidies, vets and tests the service in dir, and returns the
// output of go test.
func checkService(t *testing.T, dir string) string {
	t.Helper()
	// -e: tidy also wants the test dependencies of dependencies, which an
	// offline module cache may lack; the build does not need them.
	goCmd(t, dir, "mod", "tidy", "-e")
	goCmd(t, dir, "vet", "./...")
	return goCmd(t, dir, "test", "-count=1", "./...")
}

// goCmd runs the go command in dir, offline, with the module cache, and
// fails the test on error.
func goCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	start := time.Now()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off", "GOTOOLCHAIN=local")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	t.Logf("go %s: %s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	return string(out)
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
		t.Fatalf("PostgreSQL is not reachable (DATABASE_URL=%q): %v\n"+
			"The generated tests this test runs need a PostgreSQL server they may create schemas on: "+
			"run `make test`, which starts one when none answers, or set DATABASE_URL.", url, err)
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
	goCmd(t, repo, "mod", "tidy", "-e")
	goCmd(t, repo, "vet", "./...")
	goCmd(t, repo, "build", "./...")
}
