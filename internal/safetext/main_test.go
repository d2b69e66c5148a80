package safetext_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/vmre/vmre/client"
	"github.com/vmre/vmre/internal/vmretest"
)

func TestMain(m *testing.M) {
	vmretest.Main(m, helpers)
}

// serveVM runs a VM on client.Serve until it is stopped.
func serveVM() int {
	if err := client.Serve(context.Background(), http.NewServeMux(), client.WithShutdownTimeout(time.Second)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
