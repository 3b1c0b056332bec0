package config

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// positions maps TOML tables and keys to their lines. BurntSushi/toml keeps
// key positions to itself, so the file is scanned once more, line by line,
// for table headers and "key =" starts; that is all error messages need.
type positions struct {
	tables map[string][]int             // [[kind]] → line of each table
	keys   map[string]map[string]int    // "kind#i" → key → line
	values map[string]map[string]string // "kind#i" → key → its value as written
	texts  map[string]*strings.Builder  // "kind#i" → the table's lines
}

func scanPositions(src []byte) positions {
	p := positions{tables: map[string][]int{}, keys: map[string]map[string]int{}, values: map[string]map[string]string{}, texts: map[string]*strings.Builder{}}
	cur := "#0"
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "[["):
			kind := strings.TrimSpace(strings.Trim(strings.SplitN(line, "]]", 2)[0], "[ "))
			cur = fmt.Sprintf("%s#%d", kind, len(p.tables[kind]))
			p.tables[kind] = append(p.tables[kind], n)
		case strings.HasPrefix(line, "["):
			kind := strings.TrimSpace(strings.Trim(strings.SplitN(line, "]", 2)[0], "[ "))
			cur = kind + "#0"
			p.tables[kind] = append(p.tables[kind], n)
		default:
			if i := strings.IndexByte(line, '='); i > 0 && !strings.HasPrefix(line, "#") {
				key := strings.Trim(strings.TrimSpace(line[:i]), `"'`)
				if p.keys[cur] == nil {
					p.keys[cur], p.values[cur] = map[string]int{}, map[string]string{}
				}
				if _, dup := p.keys[cur][key]; !dup {
					p.keys[cur][key], p.values[cur][key] = n, valueText(line[i+1:])
				}
			}
		}
		if p.texts[cur] == nil {
			p.texts[cur] = &strings.Builder{}
		}
		if line != "" && !strings.HasPrefix(line, "#") {
			p.texts[cur].WriteString(line + "\n")
		}
	}
	return p
}

func (p positions) table(kind string, i int) int {
	if i < len(p.tables[kind]) {
		return p.tables[kind][i]
	}
	return 0
}

// tableWith is the index of the first table kind that holds key (0 if
// none does).
func (p positions) tableWith(kind, key string) int {
	for i := range p.tables[kind] {
		if _, ok := p.keys[fmt.Sprintf("%s#%d", kind, i)][key]; ok {
			return i
		}
	}
	return 0
}

// keyLine is the line of key in the i-th table kind, if it is there.
func (p positions) keyLine(kind string, i int, key string) (int, bool) {
	l, ok := p.keys[fmt.Sprintf("%s#%d", kind, i)][key]
	return l, ok
}

// value is key's value in the i-th table kind as written, for an error
// to quote.
func (p positions) value(kind string, i int, key string) string {
	if v := p.values[fmt.Sprintf("%s#%d", kind, i)][key]; v != "" {
		return v
	}
	return "the value"
}

// valueText is a value as written after its "=", without a comment after
// it: a quoted string up to its closing quote, anything else up to "#".
func valueText(s string) string {
	s = strings.TrimSpace(s)
	if s != "" && (s[0] == '"' || s[0] == '\'') {
		for i := 1; i < len(s); i++ {
			if s[i] == '\\' && s[0] == '"' {
				i++
				continue
			}
			if s[i] == s[0] {
				return s[:i+1]
			}
		}
		return s
	}
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

func (p positions) line(kind string, i int, key string) int {
	if l, ok := p.keys[fmt.Sprintf("%s#%d", kind, i)][key]; ok {
		return l
	}
	return p.table(kind, i)
}

func (p positions) text(kind string, i int) string {
	if b := p.texts[fmt.Sprintf("%s#%d", kind, i)]; b != nil {
		return b.String()
	}
	return ""
}
