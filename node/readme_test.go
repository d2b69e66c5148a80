package node_test

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEShowsTheExample: every line of the README's embedding snippet
// is a line of Example, which go test runs, so the snippet stays code that
// compiles and works. Example has more lines (its plugin directory, the
// hook that ends it), not other ones.
func TestREADMEShowsTheExample(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "## Embedding the engine in a node")
	_, snippet, ok2 := strings.Cut(section, "```go\n")
	snippet, _, ok3 := strings.Cut(snippet, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal(`README.md has no "## Embedding the engine in a node" section with a go snippet`)
	}
	lines := map[string]bool{}
	for line := range strings.Lines(string(example)) {
		lines[normal(line)] = true
	}
	for line := range strings.Lines(snippet) {
		if l := normal(line); l != "" && !lines[l] {
			t.Errorf("the README's snippet has a line that Example has not: %q", strings.TrimSpace(line))
		}
	}
}

// normal is a line with its runs of blanks made one space: gofmt aligns a
// struct literal's comments by its longest field.
func normal(line string) string { return strings.Join(strings.Fields(line), " ") }
