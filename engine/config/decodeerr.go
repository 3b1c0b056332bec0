package config

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/BurntSushi/toml"
)

// badType matches BurntSushi/toml's type mismatch, which it gives only as
// text: `toml: line 7 (last key "input.delete"): incompatible types: TOML
// value has type string; destination has type boolean`.
var badType = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): incompatible types: TOML value has type (\S+); destination has type (\S+)$`)

// lastKey matches the place BurntSushi/toml puts before its other
// decoding errors.
var lastKey = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): `)

// decodeError says in plain words what is wrong with a value, at the
// line of its key: in the table kind's i-th instance ("" for the keys
// outside any table), or where BurntSushi/toml says when the key is in a
// table of its own within it.
func (p *parser) decodeError(err error, kind string, i int, what string) *Error {
	line, key, msg := p.pos.table(kind, i), "", ""
	var pe toml.ParseError
	switch m := badType.FindStringSubmatch(err.Error()); {
	case errors.As(err, &pe):
		key, msg = pe.LastKey, pe.Message
		if pe.Position.Line > 0 {
			line = pe.Position.Line
		}
	case m != nil:
		key = m[2]
		fmt.Sscan(m[1], &line)
		msg = fmt.Sprintf("%s is %s; this key takes %s", p.pos.value(kind, i, last(key)), tomlKind(m[3]), goKind(m[4]))
	default:
		msg = strings.TrimPrefix(err.Error(), "toml: ")
		if m := lastKey.FindStringSubmatch(err.Error()); m != nil {
			key, msg = m[2], strings.TrimPrefix(err.Error(), m[0])
			fmt.Sscan(m[1], &line)
		}
	}
	// BurntSushi/toml knows one line per dotted key, the last table's:
	// in the second of two [[input]] tables it names the first one's.
	if l, ok := p.pos.keyLine(kind, i, last(key)); ok {
		line = l
	}
	if key != "" {
		msg = last(key) + ": " + msg
	}
	return &Error{File: p.path, Line: line, Msg: what + msg}
}

// last is the last part of a dotted key.
func last(key string) string {
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		return key[i+1:]
	}
	return key
}

// tomlKind names, for a person, the kind of a value as BurntSushi/toml
// names its Go type.
func tomlKind(goType string) string {
	switch {
	case goType == "string":
		return "text"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "a whole number"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map"):
		return "a table"
	case strings.Contains(goType, "Time"), strings.Contains(goType, "Local"):
		return "a date or time"
	}
	return goType
}

// goKind says what a key of the destination's kind takes, and how it is
// written.
func goKind(dst string) string {
	switch dst {
	case "boolean":
		return "true or false, without quotes"
	case "integer":
		return "a whole number, without quotes (like 25)"
	case "float":
		return "a number, without quotes"
	case "string":
		return `text in quotes (like "x")`
	case "slice", "array":
		return `a list in brackets (like ["a", "b"])`
	case "map", "struct":
		return "a table"
	}
	return dst
}
