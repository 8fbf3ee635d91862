package scaffold

import (
	"fmt"
	"go/token"
	"regexp"
	"strings"
	"unicode"
)

var (
	camelRE   = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)
	packageRE = regexp.MustCompile(`^[a-z][a-z0-9]*$`)
	snakeRE   = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	serviceRE = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)
	moduleRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._~-]*(/[A-Za-z0-9._~-]+)*$`)
	pathRE    = regexp.MustCompile(`^(/([a-z0-9][a-z0-9._-]*|:[a-z][a-z0-9_]*))+$`)
)

// reservedContexts are package names a context cannot take: the generated
// modules.go and main.go import package app under that name, and the go
// command treats the others specially.
var reservedContexts = map[string]string{
	"main":     "it is the service's own package",
	"app":      "modules.go imports github.com/cairn-es/cairn/app under that name",
	"internal": "the go command gives it a special meaning",
	"vendor":   "the go command gives it a special meaning",
	"testdata": "the go command ignores it",
	"sql":      "contexts keep their read-model migrations under sql/",
}

// checkContextName checks the name of a bounded context: a lowercase Go
// package name.
func checkContextName(name string) error {
	switch {
	case !packageRE.MatchString(name):
		return fmt.Errorf("invalid context name %q: a context is a Go package, so its name must be lowercase letters and digits, starting with a letter (e.g. billing)", name)
	case token.IsKeyword(name):
		return fmt.Errorf("invalid context name %q: it is a Go keyword", name)
	case reservedContexts[name] != "":
		return fmt.Errorf("invalid context name %q: %s", name, reservedContexts[name])
	case len(name) > 20:
		return fmt.Errorf("invalid context name %q: at most 20 characters, since it prefixes the names of its read models (PostgreSQL schemas)", name)
	}
	return nil
}

// checkTypeName checks a Go type name given on the command line: CamelCase,
// exported.
func checkTypeName(what, name string) error {
	if !camelRE.MatchString(name) {
		return fmt.Errorf("invalid %s name %q: it must be an exported CamelCase Go identifier: an uppercase letter, then letters and digits (e.g. %s)", what, name, exampleOf(what))
	}
	return nil
}

func exampleOf(what string) string {
	switch what {
	case "aggregate":
		return "Invoice"
	case "command":
		return "ArchiveInvoice"
	case "event":
		return "InvoiceArchived"
	case "query":
		return "ListInvoices"
	}
	return "Invoice"
}

// checkProjectionName checks a projection's base name: lowercase snake
// case, short enough that the context and a test prefix fit in a schema
// name.
func checkProjectionName(ctx, name string) error {
	if !snakeRE.MatchString(name) {
		return fmt.Errorf("invalid projection name %q: it names a table and a PostgreSQL schema, so it must be lowercase snake_case: letters, digits and single underscores, starting with a letter (e.g. invoice_totals)", name)
	}
	if full := ctx + "_" + name; len(full) > maxProjectionName {
		return fmt.Errorf("invalid projection name %q: the read model's name %q has %d characters, more than %d (PostgreSQL schema names are short, and tests prefix them)", name, full, len(full), maxProjectionName)
	}
	return nil
}

// maxProjectionName leaves room for a test's 10-character prefix within
// the 41 characters a projection name may have.
const maxProjectionName = 31

// checkServiceName checks the name of a service: its binary's name.
func checkServiceName(name string) error {
	if !serviceRE.MatchString(name) {
		return fmt.Errorf("invalid service name %q: it names the service's binary and directory, so it must be lowercase letters, digits and single dashes, starting with a letter (e.g. shop)", name)
	}
	return nil
}

// checkModulePath checks a Go module path, roughly as the go command does.
func checkModulePath(path string) error {
	if !moduleRE.MatchString(path) || strings.Contains(path, "..") || strings.HasSuffix(path, ".") {
		return fmt.Errorf("invalid module path %q: slash-separated elements of letters, digits and . _ ~ - (e.g. example.com/shop)", path)
	}
	return nil
}

// checkRoute checks an HTTP route path as echo takes it.
func checkRoute(path string) error {
	if !pathRE.MatchString(path) {
		return fmt.Errorf("invalid route %q: it must start with / and have lowercase segments or :params (e.g. /invoices/:id/archive)", path)
	}
	return nil
}

// words splits a CamelCase or snake_case name into lowercase words:
// "InvoiceLine" and "invoice_line" give [invoice line]. An acronym stays
// one word ("HTTPServer": [http server]).
func words(name string) []string {
	var out []string
	for _, part := range strings.FieldsFunc(name, func(r rune) bool { return r == '_' || r == '-' }) {
		rs := []rune(part)
		start := 0
		for i := 1; i < len(rs); i++ {
			lowerToUpper := unicode.IsLower(rs[i-1]) && unicode.IsUpper(rs[i])
			digitToUpper := unicode.IsDigit(rs[i-1]) && unicode.IsUpper(rs[i])
			acronymEnd := i+1 < len(rs) && unicode.IsUpper(rs[i-1]) && unicode.IsUpper(rs[i]) && unicode.IsLower(rs[i+1])
			if lowerToUpper || digitToUpper || acronymEnd {
				out = append(out, strings.ToLower(string(rs[start:i])))
				start = i
			}
		}
		out = append(out, strings.ToLower(string(rs[start:])))
	}
	return out
}

// commonInitialisms are written in capitals in Go names.
var commonInitialisms = map[string]bool{"id": true, "url": true, "http": true, "api": true, "json": true, "sql": true, "uuid": true, "sku": true}

func upperWord(w string) string {
	if commonInitialisms[w] {
		return strings.ToUpper(w)
	}
	return strings.ToUpper(w[:1]) + w[1:]
}

// camel is CamelCase: "invoice_line" → "InvoiceLine".
func camel(name string) string {
	var b strings.Builder
	for _, w := range words(name) {
		b.WriteString(upperWord(w))
	}
	return b.String()
}

// lowerCamel is camelCase: "InvoiceLine" → "invoiceLine".
func lowerCamel(name string) string {
	ws := words(name)
	if len(ws) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(ws[0])
	for _, w := range ws[1:] {
		b.WriteString(upperWord(w))
	}
	return b.String()
}

// snake is snake_case: "InvoiceLine" → "invoice_line".
func snake(name string) string { return strings.Join(words(name), "_") }

// kebab is kebab-case: "InvoiceLine" → "invoice-line".
func kebab(name string) string { return strings.Join(words(name), "-") }

// human is words separated by spaces: "InvoiceLine" → "invoice line".
func human(name string) string { return strings.Join(words(name), " ") }

// plural makes the last word of a CamelCase or snake_case name plural:
// "InvoiceLine" → "InvoiceLines", "category" → "categories".
func plural(name string) string {
	lower := strings.ToLower(name)
	switch {
	case strings.HasSuffix(lower, "s"), strings.HasSuffix(lower, "x"), strings.HasSuffix(lower, "z"),
		strings.HasSuffix(lower, "ch"), strings.HasSuffix(lower, "sh"):
		return name + "es"
	case strings.HasSuffix(lower, "y") && len(lower) > 1 && !strings.ContainsRune("aeiou", rune(lower[len(lower)-2])):
		return name[:len(name)-1] + "ies"
	}
	return name + "s"
}

// singular undoes plural, for the default aggregate of a context:
// "orders" → "order", "inventories" → "inventory", "billing" stays.
func singular(name string) string {
	switch {
	case strings.HasSuffix(name, "ies") && len(name) > 3:
		return name[:len(name)-3] + "y"
	case strings.HasSuffix(name, "sses"), strings.HasSuffix(name, "xes"), strings.HasSuffix(name, "zes"),
		strings.HasSuffix(name, "ches"), strings.HasSuffix(name, "shes"), strings.HasSuffix(name, "uses"):
		return name[:len(name)-2]
	case strings.HasSuffix(name, "ss"), strings.HasSuffix(name, "us"), strings.HasSuffix(name, "is"):
		return name
	case strings.HasSuffix(name, "s") && len(name) > 1:
		return name[:len(name)-1]
	}
	return name
}

// irregularPast are past tenses the rules in pastTense get wrong.
var irregularPast = map[string]string{
	"pay": "paid", "send": "sent", "buy": "bought", "sell": "sold", "put": "put",
	"set": "set", "reset": "reset", "make": "made", "take": "taken", "give": "given",
	"write": "written", "rewrite": "rewritten", "begin": "begun", "run": "run", "hold": "held",
	"build": "built", "rebuild": "rebuilt", "split": "split", "lay": "laid",
	"get": "got", "find": "found", "keep": "kept", "leave": "left", "lose": "lost",
	"withdraw": "withdrawn", "undo": "undone", "redo": "redone", "do": "done",
	"ship": "shipped", "stop": "stopped", "plan": "planned", "drop": "dropped",
	"submit": "submitted", "commit": "committed", "admit": "admitted", "permit": "permitted",
	"tag": "tagged", "ban": "banned", "pin": "pinned", "unpin": "unpinned", "flag": "flagged",
	"cancel": "canceled", "label": "labeled", "refer": "referred", "transfer": "transferred",
	"prefer": "preferred", "occur": "occurred", "bid": "bid", "rebid": "rebid", "cut": "cut",
	"see": "seen", "show": "shown", "know": "known", "draw": "drawn", "choose": "chosen",
	"freeze": "frozen", "unfreeze": "unfrozen", "tell": "told", "think": "thought", "bring": "brought",
	"spend": "spent", "meet": "met", "win": "won", "read": "read", "grow": "grown",
	"throw": "thrown", "forget": "forgotten", "hide": "hidden", "break": "broken", "speak": "spoken",
	"drive": "driven", "ride": "ridden", "rise": "risen", "fall": "fallen", "eat": "eaten",
	"bind": "bound", "feed": "fed", "lead": "led", "lend": "lent", "deal": "dealt",
	"shut": "shut", "hit": "hit", "quit": "quit", "cost": "cost", "let": "let",
	"spread": "spread", "upset": "upset", "broadcast": "broadcast", "forecast": "forecast",
	"agree": "agreed", "free": "freed", "guarantee": "guaranteed", "decree": "decreed",
	"found": "founded", "wind": "wound", "swear": "sworn", "tear": "torn",
	"wear": "worn", "bear": "borne", "shake": "shaken", "steal": "stolen", "sweep": "swept",
	"sleep": "slept", "stand": "stood", "understand": "understood", "hang": "hung", "dig": "dug",
}

// particles end phrasal verbs: in "CartCheckedOut" the participle is the
// word before "Out".
var particles = map[string]bool{
	"up": true, "out": true, "in": true, "off": true, "on": true, "down": true,
	"over": true, "back": true, "away": true, "through": true,
}

// notParticiples end in -ed without being past participles.
var notParticiples = map[string]bool{"embed": true, "shred": true, "sled": true, "hundred": true, "kindred": true}

// participleForms maps the irregular past participles to whether they are
// also a verb's base form (Set, Read, Cut): such a word may start or end a
// command.
var participleForms = func() map[string]bool {
	out := map[string]bool{}
	for _, p := range irregularPast {
		out[p] = false
	}
	for verb := range irregularPast {
		if _, ok := out[verb]; ok {
			out[verb] = true
		}
	}
	return out
}()

// participle reports whether a lowercase word is a past participle, by a
// rule simple enough to explain in a refusal: it ends in -ed (but not -eed
// or -ead, as in Seed or Thread, and is not Embed, Shred, Sled or Hundred),
// or it is an irregular participle the generator knows (Paid, Sent,
// Written, ...). alsoBase says whether it is also a verb's base form.
func participle(w string) (ok, alsoBase bool) {
	if base, irregular := participleForms[w]; irregular {
		return true, base
	}
	ok = len(w) > 3 && strings.HasSuffix(w, "ed") && !strings.HasSuffix(w, "eed") &&
		!strings.HasSuffix(w, "ead") && !notParticiples[w]
	return ok, false
}

// lastVerbWord is a name's last word, or the one before a trailing
// particle.
func lastVerbWord(ws []string) string {
	if len(ws) > 1 && particles[ws[len(ws)-1]] {
		return ws[len(ws)-2]
	}
	return ws[len(ws)-1]
}

// checkCommandConvention refuses a command named like an event: its first
// word, or its last (before a particle), is a past participle that is not
// also a verb (ArchivedInvoice, InvoiceArchived, MarkInvoicePaid).
func checkCommandConvention(name string) error {
	ws := words(name)
	for _, w := range []string{ws[0], lastVerbWord(ws)} {
		if ok, alsoBase := participle(w); ok && !alsoBase {
			return fmt.Errorf("command name %q reads as an event: %q is a past participle. Name a command verb + noun in the imperative (ArchiveInvoice, not InvoiceArchived), or pass --allow-name to keep this name",
				name, upperWord(w))
		}
	}
	return nil
}

// checkEventConvention refuses an event whose last word (before a
// particle) is not a past participle (ArchiveInvoice, InvoiceArchive).
func checkEventConvention(name string) error {
	ws := words(name)
	w := lastVerbWord(ws)
	if ok, _ := participle(w); !ok {
		return fmt.Errorf("event name %q does not read as an event: its last word %q is not a past participle. Name an event noun + past participle (e.g. InvoiceArchived, OrderPaid), or pass --allow-name to keep this name",
			name, upperWord(w))
	}
	return nil
}

// pastTense returns the past participle of an English verb, for event
// names: "archive" → "archived", "pay" → "paid". It is a heuristic; the
// --event flag overrides it.
func pastTense(verb string) string {
	v := strings.ToLower(verb)
	if p, ok := irregularPast[v]; ok {
		return p
	}
	switch {
	case strings.HasSuffix(v, "e"):
		return v + "d"
	case strings.HasSuffix(v, "y") && len(v) > 1 && !strings.ContainsRune("aeiou", rune(v[len(v)-2])):
		return v[:len(v)-1] + "ied"
	}
	return v + "ed"
}
