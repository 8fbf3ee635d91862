package scaffold

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"path"
	"slices"
	"sort"
	"strings"
)

// The files of a context that the generator owns and rewrites.
const (
	genFile     = "cairn_gen.go"
	genTestFile = "cairn_gen_test.go"
)

// Directives mark the declarations the generator wires up. They sit at the
// end of a type's doc comment:
//
//	//cairn:aggregate CATEGORY            a type embedding aggregate.Base, made by New<Type>()
//	//cairn:event [NAME]                  an event type, stored under NAME (default its type name)
//	//cairn:command [POST PATH]           a command, handled by method handlers.<Type>
//	//cairn:projection NAME               a projector, made by new<Type>(registry, name)
//	//cairn:query [GET PATH] [reads=P,...] a query, answered by method queries.<Type>
const directivePrefix = "//cairn:"

// A contextInfo is what the generator knows of a bounded-context package.
type contextInfo struct {
	Package     string // the package name
	Dir         string // slash-separated, relative to the module root
	Events      []eventDecl
	Aggregates  []aggregateDecl
	Commands    []commandDecl
	Projections []projectionDecl
	Queries     []queryDecl
	// Directives are the package's //cairn: lines, each as "Type
	// //cairn:kind args" with its spaces normalised, sorted: what the
	// generated test compares the package with to catch stale generated
	// files.
	Directives []string

	decls map[string][]string // declared identifier ("Name" or "Recv.Method") → files
	// Imports are the imports the query result types need, as they are
	// written in an import block: `"encoding/json"` or `x "example.com/y"`.
	Imports []string
}

// An eventDecl is a type marked //cairn:event. Its name is its type's
// unless the directive gives one, such as a qualified "billing.Created";
// names are unique in the service, not only in the context.
type eventDecl struct {
	Type, Name string
	File       string // the file declaring it, relative to the module root
}

type aggregateDecl struct{ Type, Category string }

// Field is the aggregate's repository field in the generated repositories.
func (a aggregateDecl) Field() string { return lowerCamel(plural(a.Type)) }

type commandDecl struct{ Type, Path string }

type projectionDecl struct{ Type, Name string }

// Field is the projection's field in the generated readModels.
func (p projectionDecl) Field() string { return lowerCamel(p.Name) }

// Ctor is the projector's constructor.
func (p projectionDecl) Ctor() string { return "new" + strings.ToUpper(p.Type[:1]) + p.Type[1:] }

type queryDecl struct {
	Type, Path, Result string
	Reads              []string // projection names
}

// ReadFields are the readModels fields of the projections the query reads.
func (q queryDecl) ReadFields() []string {
	out := make([]string, len(q.Reads))
	for i, r := range q.Reads {
		out[i] = lowerCamel(r)
	}
	return out
}

// aggregate returns the aggregate declared with type name t.
func (c *contextInfo) aggregate(t string) (aggregateDecl, bool) {
	for _, a := range c.Aggregates {
		if a.Type == t {
			return a, true
		}
	}
	return aggregateDecl{}, false
}

func (c *contextInfo) projection(name string) (projectionDecl, bool) {
	for _, p := range c.Projections {
		if p.Name == name {
			return p, true
		}
	}
	return projectionDecl{}, false
}

// declared reports whether an identifier (or "Recv.Method") is declared.
func (c *contextInfo) declared(name string) bool { return len(c.decls[name]) > 0 }

// scanContext parses the Go files of dir, as they will be after p, and
// reads its directives. It checks that every directive's counterpart
// (constructor, handler method) exists.
func scanContext(p *plan, dir string) (*contextInfo, error) {
	names, err := p.listDir(dir)
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	c := &contextInfo{Dir: dir, decls: map[string][]string{}}
	type method struct {
		decl *ast.FuncDecl
		file *ast.File
	}
	methods := map[string]method{}
	funcs := map[string]bool{}
	var files []*ast.File
	var fileNames []string
	for _, name := range names {
		if !strings.HasSuffix(name, ".go") {
			continue
		}
		rel := path.Join(dir, name)
		src, err := p.readFile(rel)
		if err != nil {
			return nil, err
		}
		f, err := parser.ParseFile(fset, rel, src, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", rel, err)
		}
		if strings.HasSuffix(f.Name.Name, "_test") {
			continue // an external test package: a namespace of its own
		}
		if c.Package == "" || name == genFile {
			c.Package = f.Name.Name
		}
		files = append(files, f)
		fileNames = append(fileNames, rel)
	}
	for i, f := range files {
		rel := fileNames[i]
		if f.Name.Name != c.Package {
			return nil, fmt.Errorf("%s: package %s, but the context's package is %s", rel, f.Name.Name, c.Package)
		}
		generated := path.Base(rel) == genFile || path.Base(rel) == genTestFile
		test := strings.HasSuffix(rel, "_test.go")
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil {
					if d.Name.Name != "init" && d.Name.Name != "_" {
						c.decls[d.Name.Name] = append(c.decls[d.Name.Name], rel)
						funcs[d.Name.Name] = true
					}
					continue
				}
				recv := receiverType(d.Recv.List[0].Type)
				key := recv + "." + d.Name.Name
				c.decls[key] = append(c.decls[key], rel)
				methods[key] = method{d, f}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						c.decls[s.Name.Name] = append(c.decls[s.Name.Name], rel)
						if st, ok := s.Type.(*ast.StructType); ok {
							for _, f := range st.Fields.List {
								for _, n := range fieldNames(f) {
									key := s.Name.Name + "." + n
									c.decls[key] = append(c.decls[key], rel)
								}
							}
						}
						if generated || test {
							continue
						}
						doc := s.Doc
						if doc == nil && len(d.Specs) == 1 {
							doc = d.Doc
						}
						if err := c.directives(fset, doc, s.Name.Name); err != nil {
							return nil, err
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.Name != "_" {
								c.decls[n.Name] = append(c.decls[n.Name], rel)
							}
						}
					}
				}
			}
		}
	}
	if c.Package == "" {
		return nil, fmt.Errorf("%s has no Go files", dir)
	}
	// Every directive needs its counterpart, so that the generated file
	// compiles; say what is missing rather than leave it to the compiler.
	for _, a := range c.Aggregates {
		if !funcs["New"+a.Type] {
			return nil, fmt.Errorf("%s: aggregate %s has no constructor: add func New%s() *%s", dir, a.Type, a.Type, a.Type)
		}
	}
	for _, cmd := range c.Commands {
		if _, ok := methods["handlers."+cmd.Type]; !ok {
			return nil, fmt.Errorf("%s: command %s has no handler: add func (h handlers) %s(ctx context.Context, cmd %s) (eventstore.AppendResult, error)", dir, cmd.Type, cmd.Type, cmd.Type)
		}
	}
	for _, pr := range c.Projections {
		if !funcs[pr.Ctor()] {
			return nil, fmt.Errorf("%s: projection %s has no constructor: add func %s(r *eventstore.Registry, name string) *%s", dir, pr.Name, pr.Ctor(), pr.Type)
		}
	}
	for i, q := range c.Queries {
		m, ok := methods["queries."+q.Type]
		if !ok || m.decl.Type.Results == nil || len(m.decl.Type.Results.List) != 2 {
			return nil, fmt.Errorf("%s: query %s has no handler: add func (q queries) %s(ctx context.Context, qry %s) (RESULT, error)", dir, q.Type, q.Type, q.Type)
		}
		var b bytes.Buffer
		if err := format.Node(&b, fset, m.decl.Type.Results.List[0].Type); err != nil {
			return nil, err
		}
		c.Queries[i].Result = b.String()
		imports, err := importsOf(m.file, m.decl.Type.Results.List[0].Type)
		if err != nil {
			return nil, fmt.Errorf("%s: query %s: %w", dir, q.Type, err)
		}
		c.Imports = append(c.Imports, imports...)
		for _, r := range q.Reads {
			if _, ok := c.projection(r); !ok {
				return nil, fmt.Errorf("%s: query %s reads=%s, but the context has no //cairn:projection %s", dir, q.Type, r, r)
			}
		}
	}
	sortContext(c)
	return c, nil
}

// importsOf returns the imports of f that the expression e uses.
func importsOf(f *ast.File, e ast.Expr) ([]string, error) {
	var out []string
	var err error
	ast.Inspect(e, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		id, ok := sel.X.(*ast.Ident)
		if !ok {
			return true
		}
		for _, is := range f.Imports {
			if importName(is) == id.Name {
				spec := is.Path.Value
				if is.Name != nil {
					spec = is.Name.Name + " " + spec
				}
				out = append(out, spec)
				return false
			}
		}
		err = fmt.Errorf("the result type uses %s, which its file does not import", id.Name)
		return false
	})
	return out, err
}

// directives reads the //cairn: lines of a type's doc comment.
func (c *contextInfo) directives(fset *token.FileSet, doc *ast.CommentGroup, typ string) error {
	if doc == nil {
		return nil
	}
	for _, com := range doc.List {
		text, ok := strings.CutPrefix(com.Text, directivePrefix)
		if !ok {
			continue
		}
		pos := fset.Position(com.Pos())
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%s:%d: %s%s: %s", pos.Filename, pos.Line, directivePrefix, text, fmt.Sprintf(format, args...))
		}
		fields := strings.Fields(text)
		if len(fields) == 0 {
			return bad("empty directive")
		}
		c.Directives = append(c.Directives, typ+" "+directivePrefix+strings.Join(fields, " "))
		kind, args := fields[0], fields[1:]
		switch kind {
		case "event":
			name := typ
			if len(args) > 1 {
				return bad("want //cairn:event [NAME]")
			}
			if len(args) == 1 {
				name = args[0]
			}
			c.Events = append(c.Events, eventDecl{Type: typ, Name: name, File: pos.Filename})
		case "aggregate":
			if len(args) != 1 || strings.ContainsAny(args[0], "-\"\\") {
				return bad("want //cairn:aggregate CATEGORY (a stream category, without '-')")
			}
			c.Aggregates = append(c.Aggregates, aggregateDecl{Type: typ, Category: args[0]})
		case "command":
			cmd := commandDecl{Type: typ}
			switch {
			case len(args) == 0:
			case len(args) == 2 && args[0] == "POST":
				if err := checkRoute(args[1]); err != nil {
					return bad("%v", err)
				}
				cmd.Path = args[1]
			default:
				return bad("want //cairn:command [POST PATH]")
			}
			c.Commands = append(c.Commands, cmd)
		case "projection":
			if len(args) != 1 || !snakeRE.MatchString(args[0]) {
				return bad("want //cairn:projection NAME (lowercase snake_case)")
			}
			c.Projections = append(c.Projections, projectionDecl{Type: typ, Name: args[0]})
		case "query":
			q := queryDecl{Type: typ}
			for len(args) > 0 {
				switch {
				case args[0] == "GET" && len(args) > 1:
					if err := checkRoute(args[1]); err != nil {
						return bad("%v", err)
					}
					q.Path, args = args[1], args[2:]
				case strings.HasPrefix(args[0], "reads="):
					q.Reads = append(q.Reads, strings.Split(strings.TrimPrefix(args[0], "reads="), ",")...)
					args = args[1:]
				default:
					return bad("want //cairn:query [GET PATH] [reads=PROJECTION,...]")
				}
			}
			c.Queries = append(c.Queries, q)
		default:
			return bad("unknown directive (want aggregate, event, command, projection or query)")
		}
	}
	return nil
}

func sortContext(c *contextInfo) {
	sort.Slice(c.Events, func(i, j int) bool { return c.Events[i].Type < c.Events[j].Type })
	sort.Slice(c.Aggregates, func(i, j int) bool { return c.Aggregates[i].Type < c.Aggregates[j].Type })
	sort.Slice(c.Commands, func(i, j int) bool { return c.Commands[i].Type < c.Commands[j].Type })
	sort.Slice(c.Projections, func(i, j int) bool { return c.Projections[i].Name < c.Projections[j].Name })
	sort.Slice(c.Queries, func(i, j int) bool { return c.Queries[i].Type < c.Queries[j].Type })
	sort.Strings(c.Imports)
	c.Imports = slices.Compact(c.Imports)
	sort.Strings(c.Directives)
}

// fieldNames are the names a struct field declares: its names, or its
// type's for an embedded field.
func fieldNames(f *ast.Field) []string {
	if len(f.Names) == 0 {
		return []string{receiverType(embeddedType(f.Type))}
	}
	var out []string
	for _, n := range f.Names {
		out = append(out, n.Name)
	}
	return out
}

// embeddedType strips the package of an embedded field's type.
func embeddedType(e ast.Expr) ast.Expr {
	if star, ok := e.(*ast.StarExpr); ok {
		e = star.X
	}
	if sel, ok := e.(*ast.SelectorExpr); ok {
		return sel.Sel
	}
	return e
}

// receiverType names a method's receiver type: "*Invoice" and "Box[T]"
// give "Invoice" and "Box".
func receiverType(e ast.Expr) string {
	for {
		switch t := e.(type) {
		case *ast.StarExpr:
			e = t.X
		case *ast.IndexExpr:
			e = t.X
		case *ast.IndexListExpr:
			e = t.X
		case *ast.ParenExpr:
			e = t.X
		case *ast.Ident:
			return t.Name
		default:
			return ""
		}
	}
}

// checkNew refuses a run whose new files declare what the package already
// declares, or declare something twice among themselves, or whose routes
// or event names collide.
func checkNew(c *contextInfo, p *plan) error {
	var clashes []string
	for name, files := range c.decls {
		if len(files) < 2 {
			continue
		}
		planned := false
		for _, f := range files {
			if _, ok := p.files[f]; ok {
				planned = true
			}
		}
		if planned {
			clashes = append(clashes, fmt.Sprintf("%s is declared in %s", name, strings.Join(files, " and ")))
		}
	}
	sort.Strings(clashes)
	if len(clashes) > 0 {
		return fmt.Errorf("refusing to generate: names already declared in package %s:\n  %s", c.Package, strings.Join(clashes, "\n  "))
	}
	return checkUnique(c)
}

// checkUnique refuses two declarations of one route, event name or
// projection name.
func checkUnique(c *contextInfo) error {
	seen := map[string]string{}
	claim := func(key, who string) error {
		if prev, ok := seen[key]; ok {
			return fmt.Errorf("%s: %s and %s both declare %s", c.Dir, prev, who, key)
		}
		seen[key] = who
		return nil
	}
	for _, cmd := range c.Commands {
		if cmd.Path != "" {
			if err := claim("route POST "+cmd.Path, cmd.Type); err != nil {
				return err
			}
		}
	}
	for _, q := range c.Queries {
		if q.Path != "" {
			if err := claim("route GET "+q.Path, q.Type); err != nil {
				return err
			}
		}
	}
	for _, e := range c.Events {
		if err := claim("event name "+e.Name, e.Type); err != nil {
			return err
		}
	}
	for _, pr := range c.Projections {
		if err := claim("projection "+pr.Name, pr.Type); err != nil {
			return err
		}
	}
	for _, a := range c.Aggregates {
		if err := claim("stream category "+a.Category, a.Type); err != nil {
			return err
		}
	}
	return nil
}

// checkServiceEvents refuses a run after which two contexts of the service
// would declare one event name. A stored event's name is what picks the Go
// type it decodes to, in a registry every context of the service shares, so
// a name belongs to one context. The context whose declaration the run
// writes is the one refused.
func checkServiceEvents(p *plan) error {
	dirs, err := contextDirs(p)
	if err != nil {
		return err
	}
	type owner struct {
		ctx   string
		event eventDecl
	}
	first := map[string]owner{}
	var clashes []string
	for _, dir := range dirs {
		c, err := scanContext(p, dir)
		if err != nil {
			return err
		}
		for _, e := range c.Events {
			prev, ok := first[e.Name]
			if !ok {
				first[e.Name] = owner{c.Package, e}
				continue
			}
			if path.Dir(prev.event.File) == path.Dir(e.File) {
				continue // one context: checkUnique's concern
			}
			a, b := prev, owner{c.Package, e}
			_, aNew := p.files[a.event.File]
			_, bNew := p.files[b.event.File]
			if aNew && !bNew {
				a, b = b, a
			}
			desc := func(o owner) string { return fmt.Sprintf("%s in %s", o.event.Type, o.event.File) }
			if aNew == bNew {
				clashes = append(clashes, fmt.Sprintf("contexts %s and %s both declare event name %q (%s; %s): rename one of the events, or qualify its name (//cairn:event %s.%s)",
					a.ctx, b.ctx, e.Name, desc(a), desc(b), b.ctx, b.event.Type))
				continue
			}
			clashes = append(clashes, fmt.Sprintf("context %s cannot declare event name %q (%s): context %s declares it already (%s); rename the event, or qualify its name (//cairn:event %s.%s)",
				b.ctx, e.Name, desc(b), a.ctx, desc(a), b.ctx, b.event.Type))
		}
	}
	if len(clashes) > 0 {
		return fmt.Errorf("refusing to generate: event names are unique in a service, since stored events carry them:\n  %s", strings.Join(clashes, "\n  "))
	}
	return nil
}
