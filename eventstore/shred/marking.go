package shred

import (
	"fmt"
	"reflect"
	"strings"
)

// The values of the cairn struct tag.
const (
	tagKey      = "cairn"
	tagPersonal = "personal"
	tagSubject  = "subject"
)

// plan locates the tagged fields of one event type.
type plan struct {
	subject  field
	personal []field
}

type field struct {
	index []int  // for reflect.Value.FieldByIndex
	name  string // Go path, for errors
	// path is where the value sits in the stored JSON ("address.street"):
	// part of a sealed value's additional data, so it is the JSON path,
	// which Go renames that keep the json tag do not change.
	path string
}

// MarkingError reports an event type whose cairn tags cannot work.
type MarkingError struct {
	GoType reflect.Type
	Field  string
	Reason string
}

func (e *MarkingError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%v: %v: %s", ErrInvalidMarking, e.GoType, e.Reason)
	}
	return fmt.Sprintf("%v: %v.%s: %s", ErrInvalidMarking, e.GoType, e.Field, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidMarking) true.
func (e *MarkingError) Unwrap() error { return ErrInvalidMarking }

// makePlan reads the tags of struct type t; a type without them gets an
// empty plan.
func makePlan(t reflect.Type) (*plan, error) {
	p := &plan{}
	if t.Kind() != reflect.Struct {
		return p, nil
	}
	var subjects []field
	if err := walk(t, t, nil, "", "", p, &subjects); err != nil {
		return nil, err
	}
	switch {
	case len(subjects) > 1:
		return nil, &MarkingError{GoType: t, Field: subjects[1].name, Reason: fmt.Sprintf("a second subject field (the first is %s)", subjects[0].name)}
	case len(p.personal) > 0 && len(subjects) == 0:
		return nil, &MarkingError{GoType: t, Reason: `personal fields but no cairn:"subject" field`}
	case len(subjects) == 1:
		p.subject = subjects[0]
	}
	return p, nil
}

// walk collects the tagged fields of struct type t, which sits at index
// path at inside root, at Go path path and JSON path jsonPath.
func walk(root, t reflect.Type, at []int, path, jsonPath string, p *plan, subjects *[]field) error {
	for i := range t.NumField() {
		sf := t.Field(i)
		f := field{index: append(append([]int(nil), at...), i), name: path + sf.Name, path: jsonPath + jsonName(sf)}
		bad := func(reason string) error { return &MarkingError{GoType: root, Field: f.name, Reason: reason} }
		tag, tagged := sf.Tag.Lookup(tagKey)
		if !tagged {
			if err := walkUntagged(root, sf, f, p, subjects); err != nil {
				return err
			}
			continue
		}
		switch {
		case tag != tagPersonal && tag != tagSubject:
			return bad(fmt.Sprintf("unknown cairn tag %q (want %q or %q)", tag, tagPersonal, tagSubject))
		case !sf.IsExported():
			return bad("tagged field is not exported")
		case sf.Type.Kind() != reflect.String:
			return bad(fmt.Sprintf("cairn:%q on a %v field; only strings can be tagged", tag, sf.Type))
		case tag == tagPersonal:
			p.personal = append(p.personal, f)
		default:
			*subjects = append(*subjects, f)
		}
	}
	return nil
}

// walkUntagged descends into struct values (JSON encodes them inline or as
// objects, and a copy of the event copies them) and refuses tags hidden
// where sealing a copy would not reach or would change the caller's value.
func walkUntagged(root reflect.Type, sf reflect.StructField, f field, p *plan, subjects *[]field) error {
	switch {
	case sf.Type.Kind() == reflect.Struct && (sf.IsExported() || sf.Anonymous):
		jsonPath := f.path + "."
		if inlined(sf) {
			jsonPath = strings.TrimSuffix(f.path, jsonName(sf))
		}
		return walk(root, sf.Type, f.index, f.name+".", jsonPath, p, subjects)
	case hasTags(sf.Type, map[reflect.Type]bool{}):
		return &MarkingError{GoType: root, Field: f.name,
			Reason: "cairn tags behind a pointer, slice, array, map or unexported field are not supported"}
	}
	return nil
}

// hasTags reports whether a cairn tag is reachable from t.
func hasTags(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return false
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return hasTags(t.Elem(), seen)
	case reflect.Map:
		return hasTags(t.Key(), seen) || hasTags(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			if _, ok := t.Field(i).Tag.Lookup(tagKey); ok || hasTags(t.Field(i).Type, seen) {
				return true
			}
		}
	}
	return false
}

// jsonName is the key encoding/json gives field sf.
func jsonName(sf reflect.StructField) string {
	name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
	if name == "" || name == "-" {
		return sf.Name
	}
	return name
}

// inlined reports an embedded struct whose fields encoding/json promotes
// into the enclosing object.
func inlined(sf reflect.StructField) bool {
	name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
	return sf.Anonymous && name == ""
}
