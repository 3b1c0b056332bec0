package scripts

import (
	"strings"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/ast"
)

// Lua's `..` is one VM instruction: gopher-lua checks the deadline before
// it and never during it, and it allocates whatever the operands add up to.
// `s = s .. s` forty times asks for a terabyte in forty instructions, each
// one too long for the watchdog to see. So the script is rewritten before
// it is compiled: every chain `a .. b .. c` becomes one call to
// boundedConcat(a, b, c), a Go function that adds up the lengths first and
// refuses a result over the script's memory bound. A chain is one call, as
// it was one instruction, so ordinary scripts pay little (Chain3 bench).

// concatName is the chunk-level local that holds boundedConcat. A script
// that declares a local of the same name only changes its own `..`; every
// other way to build a string is bounded too.
const concatName = "__bounded_concat"

// rewriteConcat replaces every `..` chain in a parsed chunk.
func rewriteConcat(chunk []ast.Stmt) []ast.Stmt {
	r := concatRewriter{}
	r.stmts(chunk)
	head := &ast.LocalAssignStmt{Names: []string{concatName}, Exprs: []ast.Expr{&ast.IdentExpr{Value: concatName}}}
	if len(chunk) > 0 {
		head.SetLine(chunk[0].Line())
		head.SetLastLine(chunk[0].Line())
	}
	return append([]ast.Stmt{head}, chunk...)
}

type concatRewriter struct{}

func (r concatRewriter) stmts(list []ast.Stmt) {
	for _, s := range list {
		r.stmt(s)
	}
}

func (r concatRewriter) stmt(s ast.Stmt) {
	switch s := s.(type) {
	case *ast.AssignStmt:
		r.exprs(s.Lhs)
		r.exprs(s.Rhs)
	case *ast.LocalAssignStmt:
		r.exprs(s.Exprs)
	case *ast.FuncCallStmt:
		s.Expr = r.expr(s.Expr)
	case *ast.DoBlockStmt:
		r.stmts(s.Stmts)
	case *ast.WhileStmt:
		s.Condition = r.expr(s.Condition)
		r.stmts(s.Stmts)
	case *ast.RepeatStmt:
		s.Condition = r.expr(s.Condition)
		r.stmts(s.Stmts)
	case *ast.IfStmt:
		s.Condition = r.expr(s.Condition)
		r.stmts(s.Then)
		r.stmts(s.Else)
	case *ast.NumberForStmt:
		s.Init = r.expr(s.Init)
		s.Limit = r.expr(s.Limit)
		s.Step = r.expr(s.Step)
		r.stmts(s.Stmts)
	case *ast.GenericForStmt:
		r.exprs(s.Exprs)
		r.stmts(s.Stmts)
	case *ast.FuncDefStmt:
		if s.Name != nil {
			s.Name.Func = r.expr(s.Name.Func)
			s.Name.Receiver = r.expr(s.Name.Receiver)
		}
		r.stmts(s.Func.Stmts)
	case *ast.ReturnStmt:
		r.exprs(s.Exprs)
	}
}

func (r concatRewriter) exprs(list []ast.Expr) {
	for i, e := range list {
		list[i] = r.expr(e)
	}
}

func (r concatRewriter) expr(e ast.Expr) ast.Expr {
	switch e := e.(type) {
	case *ast.StringConcatOpExpr:
		var operands []ast.Expr
		for {
			// `a .. b .. c` parses as a .. (b .. c): walk down the right.
			operands = append(operands, r.expr(e.Lhs))
			next, ok := e.Rhs.(*ast.StringConcatOpExpr)
			if !ok {
				operands = append(operands, r.expr(e.Rhs))
				break
			}
			e = next
		}
		call := &ast.FuncCallExpr{Func: &ast.IdentExpr{Value: concatName}, Args: operands, AdjustRet: true}
		call.SetLine(e.Line())
		call.SetLastLine(e.LastLine())
		call.Func.SetLine(e.Line())
		call.Func.SetLastLine(e.LastLine())
		return call
	case *ast.AttrGetExpr:
		e.Object = r.expr(e.Object)
		e.Key = r.expr(e.Key)
	case *ast.TableExpr:
		for _, f := range e.Fields {
			f.Key = r.expr(f.Key)
			f.Value = r.expr(f.Value)
		}
	case *ast.FuncCallExpr:
		e.Func = r.expr(e.Func)
		e.Receiver = r.expr(e.Receiver)
		r.exprs(e.Args)
	case *ast.LogicalOpExpr:
		e.Lhs = r.expr(e.Lhs)
		e.Rhs = r.expr(e.Rhs)
	case *ast.RelationalOpExpr:
		e.Lhs = r.expr(e.Lhs)
		e.Rhs = r.expr(e.Rhs)
	case *ast.ArithmeticOpExpr:
		e.Lhs = r.expr(e.Lhs)
		e.Rhs = r.expr(e.Rhs)
	case *ast.UnaryMinusOpExpr:
		e.Expr = r.expr(e.Expr)
	case *ast.UnaryNotOpExpr:
		e.Expr = r.expr(e.Expr)
	case *ast.UnaryLenOpExpr:
		e.Expr = r.expr(e.Expr)
	case *ast.FunctionExpr:
		r.stmts(e.Stmts)
	}
	return e
}

// boundedConcat is `..` with Lua's rules (strings and numbers join, other
// values use their __concat metamethod, right to left) and the script's
// memory bound on the result.
func boundedConcat(b *budget) lua.LGFunction {
	return func(L *lua.LState) int {
		n := L.GetTop()
		total := int64(0)
		plain := true
		for i := 1; i <= n; i++ {
			v := L.Get(i)
			switch v := v.(type) {
			case lua.LString:
				total += int64(len(v))
			case lua.LNumber:
				total += 24
			default:
				plain = false
			}
		}
		if plain {
			b.charge(L, total, "`..`")
			var s strings.Builder
			s.Grow(int(total))
			for i := 1; i <= n; i++ {
				s.WriteString(lua.LVAsString(L.Get(i)))
			}
			L.Push(lua.LString(s.String()))
			return 1
		}
		acc := L.Get(n)
		for i := n - 1; i >= 1; i-- {
			acc = concatPair(L, L.Get(i), acc, b)
		}
		L.Push(acc)
		return 1
	}
}

func concatPair(L *lua.LState, a, b lua.LValue, bud *budget) lua.LValue {
	if lua.LVCanConvToString(a) && lua.LVCanConvToString(b) {
		sa, sb := lua.LVAsString(a), lua.LVAsString(b)
		bud.charge(L, int64(len(sa))+int64(len(sb)), "`..`")
		return lua.LString(sa + sb)
	}
	mm := L.GetMetaField(a, "__concat")
	if mm == lua.LNil {
		mm = L.GetMetaField(b, "__concat")
	}
	if mm == lua.LNil {
		bad := a
		if lua.LVCanConvToString(a) {
			bad = b
		}
		L.RaiseError("attempt to concatenate a %s value", bad.Type().String())
	}
	L.Push(mm)
	L.Push(a)
	L.Push(b)
	L.Call(2, 1)
	ret := L.Get(-1)
	L.Pop(1)
	return ret
}
