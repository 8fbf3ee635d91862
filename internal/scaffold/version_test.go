package scaffold

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// TestReleased checks which versions count as released: tagged semver, not
// the pseudo-versions of builds from a checkout, nor dirty ones.
func TestReleased(t *testing.T) {
	for v, want := range map[string]bool{
		"v0.1.0":                               true,
		"v1.2.3":                               true,
		"v1.2.3-rc.1":                          true,
		"v1.2.3+dirty":                         false,
		"(devel)":                              false,
		"":                                     false,
		"latest":                               false,
		"v0.0.0-20250101120000-abcdefabcdef":   false,
		"v1.2.4-0.20250101120000-abcdefabcdef": false,
		"v1.2.4-rc.1.0.20250101120000-abcdefabcdef": false,
		"v0.0.0-20250101120000-abcdefabcdef+dirty":  false,
	} {
		if got := released(v); got != want {
			t.Errorf("released(%q) = %v, want %v", v, got, want)
		}
	}
}

// TestDefaultCairn checks the Cairn a new service requires when no flag
// says, from the binary's build information and its recorded source path.
func TestDefaultCairn(t *testing.T) {
	tmp := t.TempDir()
	const pseudo = "v0.0.0-20250101120000-abcdefabcdef"
	checkout := filepath.Join(tmp, "src", "cairn")
	modcache := filepath.Join(tmp, "mod", "github.com", "cairn-es", "cairn@"+pseudo)
	other := filepath.Join(tmp, "other")
	for dir, module := range map[string]string{checkout: cairnModule, modcache: cairnModule, other: "example.com/other"} {
		if err := os.MkdirAll(filepath.Join(dir, "internal", "scaffold"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module "+module+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	src := func(root string) string { return filepath.Join(root, "internal", "scaffold", "version.go") }
	info := func(path, version string) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Path: path, Version: version}}
	}
	replaced := func(dir string) cairnDep {
		return cairnDep{Version: unknownVersion, Replace: filepath.ToSlash(dir)}
	}
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		src  string
		want cairnDep // zero: refused
	}{
		{"installed from a release", info(cairnModule, "v0.3.1"), "github.com/cairn-es/cairn@v0.3.1/internal/scaffold/version.go", cairnDep{Version: "v0.3.1"}},
		{"a release, its source on disk", info(cairnModule, "v0.3.1"), src(checkout), cairnDep{Version: "v0.3.1"}},
		{"built in a checkout, no VCS stamp", info(cairnModule, "(devel)"), src(checkout), replaced(checkout)},
		{"built in a checkout, VCS stamp", info(cairnModule, pseudo+"+dirty"), src(checkout), replaced(checkout)},
		{"built in a checkout, clean VCS stamp", info(cairnModule, pseudo), src(checkout), replaced(checkout)},
		{"installed at a commit from a proxy", info(cairnModule, pseudo), src(modcache), cairnDep{Version: pseudo}},
		{"another main module", info("example.com/tool", "v1.0.0"), src(checkout), replaced(checkout)},
		{"no build information", nil, src(checkout), replaced(checkout)},
		{"built with -trimpath", info(cairnModule, "(devel)"), "github.com/cairn-es/cairn/internal/scaffold/version.go", cairnDep{}},
		{"checkout deleted", info(cairnModule, pseudo+"+dirty"), src(filepath.Join(tmp, "gone")), cairnDep{}},
		{"source in another module", info(cairnModule, "(devel)"), src(other), cairnDep{}},
		{"no source path", info(cairnModule, "(devel)"), "", cairnDep{}},
	} {
		got, err := defaultCairn(tc.bi, tc.src)
		if tc.want == (cairnDep{}) {
			if !errors.Is(err, errNoCairnSource) || !strings.Contains(err.Error(), "--cairn-version") || !strings.Contains(err.Error(), "--cairn-replace") {
				t.Errorf("%s: got %+v, %v; want a refusal naming --cairn-version and --cairn-replace", tc.name, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}

// TestServiceGoMod checks the go.mod cairn new service writes for each
// way of naming Cairn, and that it never requires "latest".
func TestServiceGoMod(t *testing.T) {
	root := repoRoot(t)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"require github.com/cairn-es/cairn " + unknownVersion + "\n", "replace github.com/cairn-es/cairn => " + filepath.ToSlash(root) + "\n"}},
		{[]string{"--cairn-version", "v0.3.1"}, []string{"require github.com/cairn-es/cairn v0.3.1\n"}},
		{[]string{"--cairn-replace", root}, []string{"replace github.com/cairn-es/cairn => " + filepath.ToSlash(root) + "\n"}},
	} {
		svc := filepath.Join(t.TempDir(), "shop")
		out := mustCairn(t, append([]string{"new", "service", "shop", "--dir", svc}, tc.args...)...)
		gomod, err := os.ReadFile(filepath.Join(svc, "go.mod"))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range tc.want {
			if !strings.Contains(string(gomod)+"\n", want) {
				t.Errorf("cairn new service %s: go.mod lacks %q:\n%s", strings.Join(tc.args, " "), want, gomod)
			}
		}
		if bytes.Contains(gomod, []byte("latest")) || (tc.args != nil && tc.args[0] == "--cairn-version" && bytes.Contains(gomod, []byte("replace"))) {
			t.Errorf("cairn new service %s: go.mod:\n%s", strings.Join(tc.args, " "), gomod)
		}
		if !strings.Contains(out, "The service ") || !strings.Contains(out, "make run") {
			t.Errorf("cairn new service %s does not say which Cairn it uses and what next:\n%s", strings.Join(tc.args, " "), out)
		}
	}
}

// TestWithPostgresCopy keeps the script generated services run their
// tests and server with equal to this repository's, byte for byte, and
// checks it is written executable.
func TestWithPostgresCopy(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(repoRoot(t), "scripts", withPostgres))
	if err != nil {
		t.Fatal(err)
	}
	got, err := templateFS.ReadFile("templates/" + withPostgres)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("templates/%s differs from scripts/%s: copy the script over the template", withPostgres, withPostgres)
	}
	svc := filepath.Join(t.TempDir(), "shop")
	mustCairn(t, "new", "service", "shop", "--dir", svc, "--cairn-version", "v0.1.0")
	info, err := os.Stat(filepath.Join(svc, "scripts", withPostgres))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o755 {
		t.Errorf("scripts/%s has mode %v, want 0755", withPostgres, info.Mode().Perm())
	}
}

// TestNamingConvention checks the names commands and events are held to.
func TestNamingConvention(t *testing.T) {
	for _, name := range []string{"ArchiveInvoice", "SetPrice", "ReadMessage", "MarkMessageRead", "SeedCatalog",
		"ProceedToCheckout", "EmbedWidget", "ResetPassword", "CheckOutCart", "FoundCompany", "ShredDocument", "AddBed", "Apply"} {
		if err := checkCommandConvention(name); err != nil {
			t.Errorf("command %s refused: %v", name, err)
		}
	}
	for _, name := range []string{"InvoiceArchived", "ArchivedInvoice", "MarkInvoicePaid", "CartCheckedOut", "PaidInvoice", "OrderWritten"} {
		if err := checkCommandConvention(name); err == nil || !strings.Contains(err.Error(), "reads as an event") || !strings.Contains(err.Error(), "--allow-name") {
			t.Errorf("command %s: %v, want a refusal naming --allow-name", name, err)
		}
	}
	for _, name := range []string{"InvoiceArchived", "OrderPaid", "PriceSet", "CartCheckedOut", "PaymentGuaranteed",
		"MessageRead", "OrderShipped", "AccountFrozen", "UserSignedUp", "OrderSent", "Archived"} {
		if err := checkEventConvention(name); err != nil {
			t.Errorf("event %s refused: %v", name, err)
		}
	}
	for _, name := range []string{"ArchiveInvoice", "InvoiceArchive", "CatalogSeed", "InvoiceThread", "OrderCheckOut", "Invoice"} {
		if err := checkEventConvention(name); err == nil || !strings.Contains(err.Error(), "is not a past participle") || !strings.Contains(err.Error(), "--allow-name") {
			t.Errorf("event %s: %v, want a refusal naming --allow-name", name, err)
		}
	}
	// Every event the generator derives from a command passes.
	for verb := range irregularPast {
		if err := checkEventConvention("Invoice" + camel(pastTense(verb))); err != nil {
			t.Errorf("the derived event of %s is refused: %v", verb, err)
		}
	}
}
