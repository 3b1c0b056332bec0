package scripts

import (
	"bytes"
	"os"
	"reflect"

	"github.com/yuin/gopher-lua/ast"
	"github.com/yuin/gopher-lua/parse"

	"github.com/mailflow/mailflow/engine/plugin"
)

// Routes implements plugin.RouteLister: every route(...) call in the
// script, with the output names it gives as string literals, and a Route
// with no Output for an argument computed at run time. It reads the
// script's own text, not the modules it requires.
func (s *Script) Routes() ([]plugin.Route, error) {
	src, err := os.ReadFile(s.path)
	if err != nil {
		return nil, err
	}
	chunk, err := parse.Parse(bytes.NewReader(src), s.name)
	if err != nil {
		return nil, err
	}
	var routes []plugin.Route
	add := func(name string, line int) {
		routes = append(routes, plugin.Route{Output: name, File: s.path, Line: line})
	}
	eachCall(reflect.ValueOf(chunk), func(call *ast.FuncCallExpr) {
		if id, ok := call.Func.(*ast.IdentExpr); !ok || id.Value != "route" || call.Receiver != nil {
			return
		}
		args := call.Args
		if len(args) == 1 {
			if t, ok := args[0].(*ast.TableExpr); ok {
				args = args[:0:0]
				for _, f := range t.Fields {
					if f.Key != nil {
						add("", call.Line())
						continue
					}
					args = append(args, f.Value)
				}
			}
		}
		for _, a := range args {
			if str, ok := a.(*ast.StringExpr); ok {
				add(str.Value, call.Line())
			} else {
				add("", call.Line())
			}
		}
	})
	return routes, nil
}

// eachCall calls f with every function call in the syntax tree v, in the
// order of the source. The tree's node types are many and plain structs,
// so it is walked by reflection rather than by a switch over each.
func eachCall(v reflect.Value, f func(*ast.FuncCallExpr)) {
	switch v.Kind() {
	case reflect.Interface:
		if !v.IsNil() {
			eachCall(v.Elem(), f)
		}
	case reflect.Pointer:
		if v.IsNil() {
			return
		}
		if call, ok := v.Interface().(*ast.FuncCallExpr); ok {
			f(call)
		}
		eachCall(v.Elem(), f)
	case reflect.Slice:
		for i := range v.Len() {
			eachCall(v.Index(i), f)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				eachCall(v.Field(i), f)
			}
		}
	}
}
