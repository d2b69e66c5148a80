//go:build unix

// Package examples_test runs the VMs of examples/, written in other
// languages, under the real host: `vmre run --check`, a Go host's calls to
// their own service, and a protocol version the host refuses. Node.js 20+
// and Python 3 must be on PATH, and the TypeScript VM compiled (`make
// examples`, or `npm ci` in examples/typescript-vm); the tests fail, not
// skip, without them.
package examples_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/vmre/vmre"
	examplev1 "github.com/vmre/vmre/gen/vmre/example/v1"
	"github.com/vmre/vmre/gen/vmre/example/v1/examplev1connect"
	"github.com/vmre/vmre/internal/h2c"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/launcher"
)

// vmreBin is the vmre CLI under test, built once by TestMain.
var vmreBin string

// helpers are the test binary's lives as a helper process, by mode.
var helpers = map[string]vmretest.Helper{}

func TestMain(m *testing.M) {
	if os.Getenv(vmretest.ModeKey) != "" {
		vmretest.Main(m, helpers) // the test binary as a helper process: it exits
	}
	dir, err := os.MkdirTemp("", "vmre-examples-test-")
	if err == nil {
		vmreBin = filepath.Join(dir, "vmre")
		err = build(vmreBin)
	}
	if err == nil {
		err = checkTools()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	vmretest.Main(m, nil, vmretest.RemoveDir(&dir))
}

func build(out string) error {
	cmd := exec.Command("go", "build", "-o", out, "github.com/vmre/vmre/cmd/vmre")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build vmre: %w\n%s", err, b)
	}
	return nil
}

// checkTools fails the run, with what to do, when an example cannot run.
func checkTools() error {
	var missing []string
	for _, tool := range []string{"node", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" is not in PATH")
		}
	}
	if _, err := os.Stat("typescript-vm/dist/main.js"); err != nil {
		missing = append(missing, "typescript-vm/dist/main.js is not built")
	}
	if len(missing) > 0 {
		return fmt.Errorf("the example VMs cannot run: %s; install Node.js 20+ and Python 3, then run `make examples` "+
			"(npm ci in examples/typescript-vm), or `make test`", strings.Join(missing, ", "))
	}
	return nil
}

// example is one VM of examples/ and how a Go host reaches its server.
type example struct {
	name     string
	command  []string // run from examples/
	protocol string   // what the health probe finds the VM's server speaks
	client   func() *http.Client
	options  []connect.ClientOption
}

var examples = []example{
	{
		name:     "typescript-vm",
		command:  []string{"node", "typescript-vm/dist/main.js"},
		protocol: "gRPC over h2c",
		client:   h2c.NewClient,
		options:  []connect.ClientOption{connect.WithGRPC()},
	},
	{
		name:     "http-vm",
		command:  []string{"http-vm/vm.py"},
		protocol: "Connect (JSON) over HTTP/1.1",
		client:   h2c.NewHTTP1Client,
		options:  []connect.ClientOption{connect.WithProtoJSON()},
	},
}

// record is one JSON log record of vmre.
type record map[string]any

// records parses vmre's JSON log output.
func records(t *testing.T, out string) []record {
	t.Helper()
	var recs []record
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("not a JSON record: %q", sc.Text())
		}
		recs = append(recs, r)
	}
	return recs
}

func find(t *testing.T, recs []record, msg string) record {
	t.Helper()
	for _, r := range recs {
		if r["msg"] == msg {
			return r
		}
	}
	t.Fatalf("no record %q in the log", msg)
	return nil
}

// Each example passes `vmre run --check`: it handshakes, answers the health
// probe over the protocol its server speaks, and exits 0 on SIGTERM; its
// JSON log lines keep their level and fields.
func TestRunCheck(t *testing.T) {
	t.Parallel()
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			args := append([]string{"run", "--check", "--log-format", "json", "--handshake-timeout", "60s", "--graceful-timeout", "20s"}, ex.command...)
			cmd := exec.CommandContext(ctx, vmreBin, args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("vmre %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
			}
			recs := records(t, stderr.String())
			find(t, recs, "handshake succeeded")
			if probe := find(t, recs, "health probe passed"); probe["probe"] != "grpc.health.v1" ||
				probe["protocol"] != ex.protocol || probe["status"] != "serving" {
				t.Errorf("health probe: %v; want grpc.health.v1 over %s, serving", probe, ex.protocol)
			}
			if exit := find(t, recs, "vm exited"); !strings.HasPrefix(exit["exit"].(string), "exit code 0 ") {
				t.Errorf("vm exited: %v, want exit code 0", exit)
			}
			find(t, recs, "check passed")
			if start := find(t, recs, ex.name+" starting"); start["level"] != "INFO" || start["genesis_id"] != genesisID() {
				t.Errorf("the VM's first log line: %v; want level INFO and its fields", start)
			}
		})
	}
}

// blockID is the example chain's block id (cmd/examplevm/chain.go).
func blockID(parentID string, height uint64, data []byte) string {
	h := sha256.New()
	h.Write([]byte(parentID))
	h.Write(binary.BigEndian.AppendUint64(nil, height))
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}

func genesisID() string { return blockID("", 0, []byte("vmre examplevm genesis")) }

// launch starts ex under a Go host with args, and returns the launch's
// result. A VM that a test leaves running is stopped and reaped when the
// test ends: closing the Launcher only ends the leases, and http-vm holds
// none.
func launch(t *testing.T, ex example, args ...string) (*launcher.Runtime, error) {
	t.Helper()
	l, err := launcher.New(launcher.Config{
		Name:             ex.name,
		Logger:           slog.New(slog.NewTextHandler(t.Output(), nil)),
		HandshakeTimeout: 60 * time.Second,
		GracefulTimeout:  20 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	argv := append(append([]string(nil), ex.command...), args...)
	rt, err := l.Launch(t.Context(), exec.Command(argv[0], argv[1:]...))
	if rt != nil {
		t.Cleanup(func() { // before l.Close
			rt.Stop(context.Background())
			<-rt.Done()
		})
	}
	return rt, err
}

// A Go host calls each example's own service with a connect-go client at
// the address the VM announced, and gets the chain that cmd/examplevm
// keeps, block ids and errors alike.
func TestHostCallsVM(t *testing.T) {
	t.Parallel()
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			t.Parallel()
			rt, err := launch(t, ex)
			if err != nil {
				t.Fatal(err)
			}
			httpClient := ex.client()
			defer httpClient.CloseIdleConnections()
			chain := examplev1connect.NewChainServiceClient(httpClient, "http://"+rt.Status().Addr, ex.options...)
			ctx := t.Context()

			last, err := chain.LastAccepted(ctx, connect.NewRequest(&examplev1.LastAcceptedRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			genesis := last.Msg.Block
			if genesis.Height != 0 || genesis.Id != genesisID() || genesis.ParentId != "" {
				t.Errorf("genesis: %v, want height 0, id %s", genesis, genesisID())
			}
			data := []byte("hello from a Go host \x00\xff")
			built, err := chain.BuildBlock(ctx, connect.NewRequest(&examplev1.BuildBlockRequest{Data: data}))
			if err != nil {
				t.Fatal(err)
			}
			b := built.Msg.Block
			if b.Height != 1 || b.ParentId != genesis.Id || b.Id != blockID(genesis.Id, 1, data) ||
				!bytes.Equal(b.Data, data) || b.TimestampMs < genesis.TimestampMs {
				t.Errorf("built block: %v", b)
			}
			got, err := chain.GetBlock(ctx, connect.NewRequest(&examplev1.GetBlockRequest{Height: 1}))
			if err != nil || got.Msg.Block.Id != b.Id || !bytes.Equal(got.Msg.Block.Data, data) {
				t.Errorf("GetBlock(1): %v, %v; want %v", got, err, b)
			}
			_, err = chain.GetBlock(ctx, connect.NewRequest(&examplev1.GetBlockRequest{Height: 5}))
			if connect.CodeOf(err) != connect.CodeNotFound || !strings.Contains(err.Error(), "last accepted height is 1") {
				t.Errorf("GetBlock(5): %v, want not_found naming the last height", err)
			}

			rt.Stop(ctx)
			<-rt.Done()
			if exit, _ := rt.Exit(); !exit.Success() {
				t.Errorf("the VM ended with %s, want exit code 0", exit)
			}
		})
	}
}

// An example that announces another protocol version is refused: the
// host's launch fails with the mismatch, naming both versions.
func TestVersionMismatch(t *testing.T) {
	t.Parallel()
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			t.Parallel()
			rt, err := launch(t, ex, "--protocol-version", "7")
			if rt != nil || !errors.Is(err, vmre.ErrProtocolVersionMismatch) || !errors.Is(err, vmre.ErrHandshakeFailed) {
				t.Fatalf("launch: %v, %v; want a protocol version mismatch", rt, err)
			}
			if want := "protocol version mismatch vmre: 1 vm: 7"; !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		})
	}
}

// Started without the host's variables, each example says what it is and
// how to run it, and exits 2.
func TestNotUnderAHost(t *testing.T) {
	t.Parallel()
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.CommandContext(t.Context(), ex.command[0], ex.command[1:]...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), vmre.EngineAddressKey + "=127.0.0.1:1"}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exitErr *exec.ExitError
			if !errors.As(err, &exitErr) || exitErr.ExitCode() != 2 {
				t.Fatalf("exit: %v, want exit code 2\nstderr:\n%s", err, stderr.String())
			}
			for _, want := range []string{"meant to be started by a host", "vmre serve", vmre.EngineTokenKey + " not set"} {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr %q does not say %q", stderr.String(), want)
				}
			}
		})
	}
}
