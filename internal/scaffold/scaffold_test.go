package scaffold

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/cairn-es/cairn/cli"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// cairn runs the command line as cmd/cairn does and returns its exit
// status, standard output and standard error.
func cairn(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	root := cli.New(cli.Config{Name: "cairn", Commands: []*cobra.Command{NewCommand()}})
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err := root.Execute()
	return cli.ExitCode(err), out.String(), errOut.String()
}

// mustCairn runs the command line and fails the test unless it succeeds.
func mustCairn(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := cairn(t, args...)
	if code != 0 {
		t.Fatalf("cairn %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// generateAll makes a service with a context and one of every piece in dir,
// with fixed inputs, and returns the service's directory.
func generateAll(t *testing.T, dir string, serviceArgs ...string) string {
	t.Helper()
	svc := filepath.Join(dir, "shop")
	mustCairn(t, append([]string{"new", "service", "shop", "--module", "example.com/shop", "--dir", svc}, serviceArgs...)...)
	mustCairn(t, "new", "context", "billing", "--aggregate", "Invoice", "--dir", svc)
	mustCairn(t, "new", "command", "ArchiveInvoice", "--context", "billing", "--dir", svc)
	mustCairn(t, "new", "event", "InvoiceReminded", "--context", "billing", "--dir", svc)
	mustCairn(t, "new", "projection", "invoice_activity", "--context", "billing", "--dir", svc)
	mustCairn(t, "new", "query", "ListInvoiceActivity", "--context", "billing", "--projection", "invoice_activity", "--dir", svc)
	mustCairn(t, "new", "aggregate", "Payment", "--context", "billing", "--dir", svc)
	return svc
}

// TestGolden pins the templates' output: a service, a context and one of
// every piece, file by file. Run with -update to accept changes.
func TestGolden(t *testing.T) {
	svc := generateAll(t, t.TempDir(), "--cairn-version", "v0.1.0")
	golden := filepath.Join("testdata", "golden")
	got := readTree(t, svc)
	if *update {
		if err := os.RemoveAll(golden); err != nil {
			t.Fatal(err)
		}
		for path, b := range got {
			full := filepath.Join(golden, filepath.FromSlash(path)+".golden")
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	want := map[string][]byte{}
	for path, b := range readTree(t, golden) {
		want[strings.TrimSuffix(path, ".golden")] = b
	}
	for _, path := range sortedKeys(got) {
		w, ok := want[path]
		switch {
		case !ok:
			t.Errorf("%s: generated, but there is no golden file (run go test -update)", path)
		case !bytes.Equal(got[path], w):
			t.Errorf("%s differs from its golden file (run go test -update to accept):\n%s", path, firstDiff(w, got[path]))
		}
	}
	for _, path := range sortedKeys(want) {
		if _, ok := got[path]; !ok {
			t.Errorf("%s: golden, but no longer generated", path)
		}
	}
}

// TestRefusals checks that bad input and files in the way exit non-zero
// with a clear message and leave the tree byte for byte as it was.
func TestRefusals(t *testing.T) {
	svc := generateAll(t, t.TempDir(), "--cairn-version", "v0.1.0")
	// A file of the user's where the next command would write.
	existing := filepath.Join(svc, "billing", "command_void_invoice.go")
	if err := os.WriteFile(existing, []byte("package billing\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A second context, whose events must not take billing's names.
	mustCairn(t, "new", "context", "shipping", "--dir", svc)
	taken := func(ctx, event, file string) string {
		return "context " + ctx + " cannot declare event name \"" + event + "\" (" + event + " in " + ctx + "/" + file +
			"): context billing declares it already (" + event + " in billing/"
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"new", "context", "1billing"}, 2, `invalid context name "1billing"`},
		{[]string{"new", "context", "func"}, 2, "Go keyword"},
		{[]string{"new", "context", "app"}, 2, "invalid context name"},
		{[]string{"new", "context", "billing"}, 1, "already exists"},
		{[]string{"new", "context", "sales", "--aggregate", "lowercase"}, 2, "CamelCase"},
		{[]string{"new", "command", "voidInvoice", "--context", "billing"}, 2, "CamelCase"},
		{[]string{"new", "command", "VoidInvoice", "--context", "billing"}, 1, "refusing to overwrite existing files (use --force to overwrite them):\n  " + filepath.ToSlash(filepath.Join("billing", "command_void_invoice.go"))},
		{[]string{"new", "command", "ArchiveInvoice", "--context", "billing"}, 1, "declares ArchiveInvoice already"},
		{[]string{"new", "command", "Apply", "--context", "billing", "--aggregate", "Invoice"}, 1, "Invoice.Apply is declared in"},
		{[]string{"new", "event", "InvoiceCreated", "--context", "billing"}, 1, "InvoiceCreated is declared in"},
		{[]string{"new", "query", "Other", "--context", "billing", "--projection", "invoices", "--path", "/invoices/:id"}, 1, "both declare route GET /invoices/:id"},
		{[]string{"new", "context", "sales", "--aggregate", "Invoice"}, 1, taken("sales", "InvoiceClosed", "events.go")},
		{[]string{"new", "event", "InvoiceReminded", "--context", "shipping"}, 1, taken("shipping", "InvoiceReminded", "event_invoice_reminded.go")},
		{[]string{"new", "command", "HoldShipping", "--context", "shipping", "--event", "InvoiceArchived"}, 1, taken("shipping", "InvoiceArchived", "command_hold_shipping.go")},
		{[]string{"new", "projection", "Totals", "--context", "billing"}, 2, "snake_case"},
		{[]string{"new", "projection", "invoices", "--context", "billing"}, 1, "refusing to overwrite existing files"},
		{[]string{"new", "query", "ListThings", "--context", "nowhere"}, 1, "no context nowhere"},
		{[]string{"new", "command", "DoThing"}, 2, "missing --context"},
		{[]string{"new", "service", "shop"}, 1, "refusing to overwrite existing files"},
		{[]string{"new", "service", "Shop"}, 2, "invalid service name"},
		{[]string{"new", "frobnicate"}, 2, "unknown generator"},
		{[]string{"new", "context"}, 2, "missing NAME"},
		{[]string{"new", "context", "sales", "--bogus"}, 2, "unknown flag"},
		{[]string{"new", "command", "InvoiceArchived", "--context", "billing"}, 2, `command name "InvoiceArchived" reads as an event: "Archived" is a past participle`},
		{[]string{"new", "command", "MarkInvoicePaid", "--context", "billing"}, 2, "pass --allow-name to keep this name"},
		{[]string{"new", "event", "ArchiveInvoice", "--context", "billing"}, 2, `event name "ArchiveInvoice" does not read as an event: its last word "Invoice" is not a past participle`},
		{[]string{"new", "command", "DisputeInvoice", "--context", "billing", "--event", "InvoiceDispute"}, 2, `--event: event name "InvoiceDispute" does not read as an event`},
		{[]string{"new", "service", "shop2", "--cairn-version", "latest"}, 2, `invalid --cairn-version "latest"`},
		{[]string{"new", "service", "shop2", "--cairn-replace", filepath.Join(svc, "billing")}, 2, "not a checkout of github.com/cairn-es/cairn"},
	} {
		before := hashTree(t, svc)
		args := append(tc.args, "--dir", svc)
		switch {
		case tc.args[1] == "service" && tc.args[2] == "shop2":
			args = append(tc.args, "--dir", filepath.Join(svc, "shop2"))
		case tc.args[1] == "service":
			args = append(tc.args, "--dir", svc, "--cairn-version", "v0.1.0")
		}
		code, out, errOut := cairn(t, args...)
		if code != tc.code {
			t.Errorf("cairn %s: exit %d, want %d\n%s%s", strings.Join(tc.args, " "), code, tc.code, out, errOut)
		}
		if !strings.Contains(errOut, tc.msg) {
			t.Errorf("cairn %s: message %q does not say %q", strings.Join(tc.args, " "), errOut, tc.msg)
		}
		if after := hashTree(t, svc); after != before {
			t.Errorf("cairn %s changed the tree", strings.Join(tc.args, " "))
		}
	}

	// --allow-name keeps a name the convention refuses.
	mustCairn(t, "new", "event", "InvoiceOverdue", "--context", "billing", "--dir", svc, "--allow-name")
	mustCairn(t, "new", "command", "MarkInvoicePaid", "--context", "billing", "--dir", svc, "--allow-name")

	// --force overwrites; --dry-run lists and writes nothing.
	before := hashTree(t, svc)
	out := mustCairn(t, "new", "command", "VoidInvoice", "--context", "billing", "--dir", svc, "--force", "--dry-run")
	if !strings.Contains(out, "overwrite") || !strings.Contains(out, "command_void_invoice.go") || !strings.Contains(out, "nothing was written") {
		t.Errorf("dry run lists:\n%s", out)
	}
	if hashTree(t, svc) != before {
		t.Error("--dry-run changed the tree")
	}
	mustCairn(t, "new", "command", "VoidInvoice", "--context", "billing", "--dir", svc, "--force")
	if b, _ := os.ReadFile(existing); !bytes.Contains(b, []byte("//cairn:command POST /invoices/:id/void")) {
		t.Errorf("--force did not overwrite:\n%s", b)
	}
}

// TestEventNames checks that events are stored under their type names
// unless a directive qualifies them, and that sync refuses two contexts
// declaring one name, leaving the tree as it was.
func TestEventNames(t *testing.T) {
	svc := generateAll(t, t.TempDir(), "--cairn-version", "v0.1.0")
	mustCairn(t, "new", "context", "shipping", "--dir", svc)
	gen, err := os.ReadFile(filepath.Join(svc, "billing", "cairn_gen.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(gen, []byte(`eventstore.Register[InvoiceReminded](r, "InvoiceReminded"),`)) {
		t.Errorf("billing/cairn_gen.go does not register InvoiceReminded under its type name:\n%s", gen)
	}

	// A hand-written event whose name billing has taken.
	file := filepath.Join(svc, "shipping", "reminders.go")
	write := func(directive string) {
		t.Helper()
		src := "package shipping\n\n// InvoiceReminded is shipping's own.\n//\n//cairn:event" + directive + "\ntype InvoiceReminded struct{}\n"
		if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, directive := range []string{"", " InvoiceReminded"} {
		write(directive)
		before := hashTree(t, svc)
		code, out, errOut := cairn(t, "new", "sync", "--dir", svc)
		want := `contexts billing and shipping both declare event name "InvoiceReminded" (InvoiceReminded in billing/event_invoice_reminded.go; InvoiceReminded in shipping/reminders.go)`
		if code != 1 || !strings.Contains(errOut, want) || !strings.Contains(errOut, "//cairn:event shipping.InvoiceReminded") {
			t.Errorf("sync with //cairn:event%s in shipping: exit %d, want 1 saying %q\n%s%s", directive, code, want, out, errOut)
		}
		if hashTree(t, svc) != before {
			t.Errorf("the refused sync (//cairn:event%s) changed the tree", directive)
		}
	}

	// Qualified, it is shipping's.
	write(" shipping.InvoiceReminded")
	mustCairn(t, "new", "sync", "--dir", svc)
	gen, err = os.ReadFile(filepath.Join(svc, "shipping", "cairn_gen.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(gen, []byte(`eventstore.Register[InvoiceReminded](r, "shipping.InvoiceReminded"),`)) {
		t.Errorf("shipping/cairn_gen.go does not register the qualified name:\n%s", gen)
	}
}

// TestNames checks the inflections names are made with.
func TestNames(t *testing.T) {
	for _, tc := range []struct {
		fn       func(string) string
		in, want string
	}{
		{plural, "Invoice", "Invoices"},
		{plural, "Category", "Categories"},
		{plural, "Box", "Boxes"},
		{plural, "Key", "Keys"},
		{singular, "orders", "order"},
		{singular, "inventories", "inventory"},
		{singular, "billing", "billing"},
		{singular, "addresses", "address"},
		{singular, "status", "status"},
		{snake, "InvoiceLine", "invoice_line"},
		{snake, "HTTPServer", "http_server"},
		{kebab, "AddLine", "add-line"},
		{camel, "invoice_line", "InvoiceLine"},
		{camel, "order_id", "OrderID"},
		{lowerCamel, "invoice_activity", "invoiceActivity"},
		{pastTense, "Archive", "archived"},
		{pastTense, "Pay", "paid"},
		{pastTense, "Ship", "shipped"},
		{pastTense, "Copy", "copied"},
		{pastTense, "Open", "opened"},
		{localName, "Invoice", "invoice"},
		{localName, "Type", "typeValue"},
		{localName, "Command", "commandValue"},
	} {
		if got := tc.fn(tc.in); got != tc.want {
			t.Errorf("%q gives %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestGoVersion keeps the go directive of generated modules the
// framework's: goVersion is compiled into the cairn binary, which cannot
// read the go.mod of the module it was built from (its build information
// records the toolchain, not the directive).
func TestGoVersion(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var directive string
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "go" {
			directive = f[1]
		}
	}
	if directive != goVersion {
		t.Errorf("the framework's go.mod says go %q, goVersion %q: make goVersion the same", directive, goVersion)
	}
}

// repoRoot finds the framework's checkout above the working directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modulePathOf(b) == cairnModule {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no checkout of %s above the working directory", cairnModule)
		}
		dir = parent
	}
}

// readTree reads every file under dir, by slash-separated relative path.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// hashTree hashes the paths, modes and contents of every file under dir.
func hashTree(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		h.Write([]byte(rel + "\x00" + info.Mode().String() + "\x00"))
		if !e.IsDir() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// firstDiff shows the first line where two texts differ.
func firstDiff(want, got []byte) string {
	w, g := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + strconv.Itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl
		}
	}
	return "(same lines)"
}

// TestContextInExamples runs cairn new context inside this repository's
// examples/orders, which has no generated modules.go: a dry run lists the
// context's files and the lines registering it, and a context named after
// an existing package is refused; neither writes anything.
func TestContextInExamples(t *testing.T) {
	orders := filepath.Join(repoRoot(t), "examples", "orders")
	if _, err := os.Stat(filepath.Join(orders, "orders.go")); err != nil {
		t.Fatalf("no examples/orders in this checkout: %v", err)
	}
	before := hashTree(t, orders)
	out := mustCairn(t, "new", "context", "billing", "--dir", orders, "--dry-run")
	for _, want := range []string{
		"create    " + filepath.ToSlash(filepath.Join(displayPath(orders), "billing", "module.go")) + "\n",
		"/billing/cairn_gen.go\n",
		"/billing/sql/billings.sql\n",
		"dry run: nothing was written\n",
		"  import \"github.com/cairn-es/cairn/examples/orders/billing\"\n  billing.Module{Prefix: cfg.Prefix},\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the dry run does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "/modules.go\n") {
		t.Errorf("the dry run plans a modules.go:\n%s", out)
	}
	if hashTree(t, orders) != before {
		t.Error("the dry run changed examples/orders")
	}

	code, out, errOut := cairn(t, "new", "context", "ordering", "--dir", orders)
	if code == 0 || !strings.Contains(errOut, "already exists") {
		t.Errorf("cairn new context ordering in examples/orders: exit %d, want non-zero saying it already exists\n%s%s", code, out, errOut)
	}
	if hashTree(t, orders) != before {
		t.Error("the refused run changed examples/orders")
	}
}
