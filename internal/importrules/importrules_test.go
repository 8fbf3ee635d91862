// Package importrules holds the test that enforces the package rules of
// docs/architecture.md ("Package rules") from the import graph.
package importrules

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/cairn-es/cairn"

// pkg is what `go list -json` says of one package.
type pkg struct {
	ImportPath string
	Imports    []string
}

// loadGraph lists every package of the module with its direct imports
// (tests excluded: a test may use any package to set a scene).
func loadGraph(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Imports", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	graph := map[string][]string{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("go list output: %v", err)
		}
		graph[strings.TrimPrefix(p.ImportPath, module+"/")] = own(p.Imports)
	}
	return graph
}

// own keeps the module's packages, relative to the module.
func own(imports []string) []string {
	var out []string
	for _, i := range imports {
		if strings.HasPrefix(i, module+"/") {
			out = append(out, strings.TrimPrefix(i, module+"/"))
		}
	}
	return out
}

// under reports whether p is dir or inside it.
func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// rule is one package rule: the packages it applies to may not import the
// forbidden ones, directly or through others.
type rule struct {
	why       string
	applies   func(p string) bool
	forbidden func(imp string) bool
	// direct: only direct imports count (a rule about who may name a
	// package, not about what may sit below it).
	direct bool
}

var logPackages = []string{"eventstore", "migrations", "pgdb"}

func anyOf(dirs ...string) func(string) bool {
	return func(p string) bool {
		return slices.ContainsFunc(dirs, func(d string) bool { return under(p, d) })
	}
}

var rules = []rule{
	{
		why:       "the log knows no domain, read models, sagas or HTTP",
		applies:   func(p string) bool { return under(p, "eventstore") && !strings.HasSuffix(p, "storetest") },
		forbidden: anyOf("aggregate", "command", "projection", "query", "saga", "server", "app", "cli", "examples"),
	},
	{
		why: "only app (which assembles a service) names the PostgreSQL event store; everything else reads the log through eventstore's interfaces",
		applies: func(p string) bool {
			return !under(p, "eventstore/postgres") && p != "app" && !under(p, "internal/pgtest")
		},
		forbidden: anyOf("eventstore/postgres"),
		direct:    true,
	},
	{
		why:       "the read side never loads aggregates",
		applies:   anyOf("projection", "query"),
		forbidden: anyOf("aggregate"),
	},
	{
		why:       "the write side never reads projections",
		applies:   anyOf("aggregate", "command"),
		forbidden: anyOf("projection", "query", "saga"),
	},
	{
		why:       "nothing imports the sample",
		applies:   func(p string) bool { return !under(p, "examples") },
		forbidden: anyOf("examples"),
	},
	{
		why:       "migrations and pgdb are generic: they know no owner of tables",
		applies:   anyOf("migrations", "pgdb"),
		forbidden: func(imp string) bool { return !slices.Contains(logPackages, imp) },
	},
}

// reach lists what p imports, directly or through others, with the path.
func reach(graph map[string][]string, p string) map[string][]string {
	paths := map[string][]string{}
	var walk func(from string, via []string)
	walk = func(from string, via []string) {
		for _, imp := range graph[from] {
			if _, seen := paths[imp]; seen {
				continue
			}
			paths[imp] = append(slices.Clone(via), imp)
			walk(imp, paths[imp])
		}
	}
	walk(p, []string{p})
	return paths
}

func TestPackageRules(t *testing.T) {
	graph := loadGraph(t)
	if len(graph) < 10 {
		t.Fatalf("go list found %d packages; the graph is not the module's", len(graph))
	}
	for _, r := range rules {
		for p := range graph {
			if !r.applies(p) {
				continue
			}
			imports := map[string][]string{}
			if r.direct {
				for _, imp := range graph[p] {
					imports[imp] = []string{p, imp}
				}
			} else {
				imports = reach(graph, p)
			}
			for imp, via := range imports {
				if r.forbidden(imp) {
					t.Errorf("%s imports %s (%s): %s", p, imp, strings.Join(via, " → "), r.why)
				}
			}
		}
	}
}

// The rules must be able to fail: a graph that breaks each one is caught.
func TestPackageRulesCatchViolations(t *testing.T) {
	broken := map[string][]string{
		"eventstore":          {"projection"},
		"cli":                 {"eventstore/postgres"},
		"projection":          {"aggregate"},
		"command":             {"query"},
		"saga":                {"examples/orders"},
		"migrations":          {"saga"},
		"eventstore/postgres": nil,
	}
	for _, r := range rules {
		caught := false
		for p := range broken {
			if !r.applies(p) {
				continue
			}
			for imp := range reach(broken, p) {
				caught = caught || r.forbidden(imp)
			}
		}
		if !caught {
			t.Errorf("rule %q catches nothing in a graph that breaks it", r.why)
		}
	}
}
