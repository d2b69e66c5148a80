package main

import (
	"go/parser"
	"go/token"
	"strings"
	"testing"
)

// TestPackageDocNamesEveryCommand: go doc of the command names each of
// its commands, so a new command cannot be left out.
func TestPackageDocNamesEveryCommand(t *testing.T) {
	t.Parallel()
	f, err := parser.ParseFile(token.NewFileSet(), "main.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	doc := f.Doc.Text()
	for _, c := range commands {
		if !strings.Contains(doc, "`vmre "+c.name) {
			t.Errorf("the package doc (main.go) does not name `vmre %s`", c.name)
		}
	}
}
