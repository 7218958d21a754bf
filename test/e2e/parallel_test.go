package e2e

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryTestIsParallel: a top-level test that does not call t.Parallel
// first holds every parallel test back until it ends (they only start once
// the serial ones are done). Seven such tests once cost the suite 35 s of
// wall time, one after the other, before any other test started.
func TestEveryTestIsParallel(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(repoDir, "test", "e2e", "*_test.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("the package's test files: %v (%d found)", err, len(files))
	}
	fset := token.NewFileSet()
	checked := 0
	for _, file := range files {
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Test") || fn.Name.Name == "TestMain" {
				continue
			}
			checked++
			if !startsWithParallel(fn) {
				t.Errorf("%s: %s does not call t.Parallel() first", fset.Position(fn.Pos()), fn.Name.Name)
			}
		}
	}
	if checked < 50 {
		t.Errorf("checked %d tests; the package has more than 50", checked)
	}
}

func startsWithParallel(fn *ast.FuncDecl) bool {
	if fn.Body == nil || len(fn.Body.List) == 0 {
		return false
	}
	stmt, ok := fn.Body.List[0].(*ast.ExprStmt)
	if !ok {
		return false
	}
	call, ok := stmt.X.(*ast.CallExpr)
	if !ok {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "Parallel"
}
