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
	tables map[string][]int            // [[kind]] → line of each table
	keys   map[string]map[string]int   // "kind#i" → key → line
	texts  map[string]*strings.Builder // "kind#i" → the table's lines
}

func scanPositions(src []byte) positions {
	p := positions{tables: map[string][]int{}, keys: map[string]map[string]int{}, texts: map[string]*strings.Builder{}}
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
					p.keys[cur] = map[string]int{}
				}
				if _, dup := p.keys[cur][key]; !dup {
					p.keys[cur][key] = n
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

func (p positions) line(kind string, i int, key string) int {
	if l, ok := p.keys[fmt.Sprintf("%s#%d", kind, i)][key]; ok {
		return l
	}
	return p.table(kind, i)
}

func (p positions) firstKey(kind, key string) int {
	for i := 0; i <= len(p.tables[kind]); i++ {
		if l, ok := p.keys[fmt.Sprintf("%s#%d", kind, i)][key]; ok {
			return l
		}
	}
	return 0
}

func (p positions) text(kind string, i int) string {
	if b := p.texts[fmt.Sprintf("%s#%d", kind, i)]; b != nil {
		return b.String()
	}
	return ""
}
