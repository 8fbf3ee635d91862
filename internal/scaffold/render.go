package scaffold

import (
	"bytes"
	"embed"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"path"
	"regexp"
	"strconv"
	"strings"
	"text/template"
)

//go:embed templates
var templateFS embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"camel":      camel,
	"lowerCamel": lowerCamel,
	"snake":      snake,
	"kebab":      kebab,
	"human":      human,
	"plural":     plural,
	"article":    article,
	"recv":       receiverName,
	"local":      localName,
	"quote":      strconv.Quote,
	"join":       strings.Join,
	"lower":      strings.ToLower,
}).ParseFS(templateFS, "templates/*.tmpl"))

// article is "a" or "an" before a word.
func article(word string) string {
	if word != "" && strings.ContainsRune("aeiouAEIOU", rune(word[0])) {
		return "an"
	}
	return "a"
}

// receiverName is a method receiver for a type: its first letter,
// lowercase.
func receiverName(typ string) string { return strings.ToLower(typ[:1]) }

// shadowing are names a local variable must not take in generated code:
// keywords are refused by the compiler, the rest would hide a package or a
// parameter.
var shadowing = map[string]bool{
	"context": true, "errors": true, "aggregate": true, "app": true, "eventstore": true,
	"command": true, "query": true, "server": true, "projection": true, "pgx": true,
	"squirrel": true, "strings": true, "json": true, "ctx": true, "cmd": true, "err": true,
	"h": true, "q": true, "qry": true, "t": true, "testing": true, "http": true,
	"new": true, "len": true, "string": true, "any": true, "error": true, "make": true,
	"copy": true, "close": true, "delete": true, "append": true, "cap": true, "print": true,
}

// localName is a local variable naming a value of type typ: "Invoice" →
// "invoice", or "invoiceAgg" when that would be a keyword or shadow
// something.
func localName(typ string) string {
	n := lowerCamel(typ)
	if token.IsKeyword(n) || shadowing[n] {
		return n + "Value"
	}
	return n
}

// render executes a template. Go output is formatted, after dropping the
// imports the template listed but the output does not use.
func render(name, file string, data any) ([]byte, error) {
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, name, data); err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	if path.Ext(file) != ".go" {
		return b.Bytes(), nil
	}
	out, err := formatGo(file, b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("template %s gives invalid Go for %s (a bug in cairn new): %w\n%s", name, file, err, b.Bytes())
	}
	return out, nil
}

// formatGo drops unused imports and formats src.
func formatGo(file string, src []byte) ([]byte, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, src, parser.ParseComments|parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := sel.X.(*ast.Ident); ok {
				used[id.Name] = true
			}
		}
		return true
	})
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.IMPORT {
			continue
		}
		specs := gd.Specs[:0]
		for _, s := range gd.Specs {
			is := s.(*ast.ImportSpec)
			name := importName(is)
			if name == "_" || name == "." || used[name] {
				specs = append(specs, is)
			}
		}
		gd.Specs = specs
	}
	// Drop emptied import declarations.
	decls := f.Decls[:0]
	for _, d := range f.Decls {
		if gd, ok := d.(*ast.GenDecl); ok && gd.Tok == token.IMPORT && len(gd.Specs) == 0 {
			continue
		}
		decls = append(decls, d)
	}
	f.Decls = decls
	var b bytes.Buffer
	if err := format.Node(&b, fset, f); err != nil {
		return nil, err
	}
	// format.Node keeps the blank lines of removed imports; a second pass
	// through format.Source tidies the import block.
	return format.Source(collapseBlankImports(b.Bytes()))
}

var majorVersion = regexp.MustCompile(`^v[0-9]+$`)

// importName is the name an import declares: its alias, or the last
// element of its path that is not a major version.
func importName(is *ast.ImportSpec) string {
	if is.Name != nil {
		return is.Name.Name
	}
	p, _ := strconv.Unquote(is.Path.Value)
	elems := strings.Split(p, "/")
	last := elems[len(elems)-1]
	if majorVersion.MatchString(last) && len(elems) > 1 {
		last = elems[len(elems)-2]
	}
	return strings.TrimPrefix(strings.TrimSuffix(last, ".go"), "go-")
}

// collapseBlankImports removes runs of blank lines inside an import block
// and blank lines right after "import (" or before its ")".
func collapseBlankImports(src []byte) []byte {
	lines := strings.Split(string(src), "\n")
	var out []string
	inImport := false
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "import ("):
			inImport = true
		case inImport && l == ")":
			inImport = false
			for len(out) > 0 && strings.TrimSpace(out[len(out)-1]) == "" {
				out = out[:len(out)-1]
			}
		case inImport && strings.TrimSpace(l) == "":
			if last := out[len(out)-1]; strings.TrimSpace(last) == "" || strings.HasPrefix(last, "import (") {
				continue
			}
		}
		out = append(out, l)
	}
	return []byte(strings.Join(out, "\n"))
}
