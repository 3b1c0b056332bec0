package config

import (
	"reflect"
	"slices"
	"strings"
)

// keysOf is the TOML keys v decodes (v a struct or a pointer to one), as
// BurntSushi/toml matches them: a field's toml tag, else its name; the
// fields of an embedded struct without a tag are the outer struct's own.
// An unknown key is compared with them for a "did you mean".
func keysOf(v any) []string {
	var keys []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return
		}
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			switch {
			case tag == "-":
			case f.Anonymous && tag == "":
				walk(f.Type)
			case !f.IsExported():
			case tag != "":
				keys = append(keys, tag)
			default:
				keys = append(keys, f.Name)
			}
		}
	}
	walk(reflect.TypeOf(v))
	slices.Sort(keys)
	return slices.Compact(keys)
}
