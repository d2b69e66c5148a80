//go:build unix

package safetext_test

import "github.com/vmre/vmre/internal/vmretest"

var helpers = map[string]vmretest.Helper{"print": printVM}
