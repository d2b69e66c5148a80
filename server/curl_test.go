package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/vmre/vmre"
	runtimev1 "github.com/vmre/vmre/gen/vmre/runtime/v1"
	"github.com/vmre/vmre/internal/vmretest"
	"github.com/vmre/vmre/server"
)

// curlResult is what curl printed: the response body, the HTTP status and
// the HTTP version it spoke.
type curlResult struct {
	body        []byte
	status      int
	httpVersion string
}

// runCurl posts body as JSON to the engine's Initialize with the real curl
// binary, as the Connect protocol allows any HTTP client to.
func runCurl(t *testing.T, ctx context.Context, addr string, httpFlag, authorization, body string) curlResult {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("these tests run the real curl binary, which is not on PATH (%v): install curl (apt-get install curl); CI installs it", err)
	}
	args := []string{"-sS", "--max-time", "10", httpFlag,
		"-H", "Content-Type: application/json",
		"-d", body,
		"-w", "\n%{http_code} %{http_version}"}
	if authorization != "" {
		args = append(args, "-H", "Authorization: "+authorization)
	}
	args = append(args, "http://"+addr+"/vmre.runtime.v1.RuntimeService/Initialize")
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("curl %s: %v\nstderr: %s", strings.Join(args, " "), err, stderr.String())
	}
	out := stdout.Bytes()
	i := bytes.LastIndexByte(out, '\n')
	if i < 0 {
		t.Fatalf("curl printed %q; want the body and a status line", out)
	}
	var res curlResult
	status, version, _ := strings.Cut(string(out[i+1:]), " ")
	res.body, res.httpVersion = out[:i], version
	if res.status, err = strconv.Atoi(status); err != nil {
		t.Fatalf("curl status line %q: %v", out[i+1:], err)
	}
	return res
}

// connectError is the JSON body of a Connect protocol error.
type connectError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"details"`
}

func TestCurl(t *testing.T) {
	t.Parallel()
	e, addr := vmretest.StartEngine(t, server.Config{}, nil)

	transports := []struct {
		name        string
		flag        string
		httpVersion string
	}{
		{"http1.1", "--http1.1", "1.1"},
		{"h2c", "--http2-prior-knowledge", "2"},
	}
	cases := []struct {
		name       string
		auth       func(token string) string
		version    uint
		wantStatus int
		wantCode   string // empty for success
	}{
		{"right token", func(tok string) string { return "Bearer " + tok }, 1, 200, ""},
		{"no Authorization header", func(string) string { return "" }, 1, 401, "unauthenticated"},
		{"wrong token", func(string) string { return "Bearer " + strings.Repeat("ab", 32) }, 1, 401, "unauthenticated"},
		{"version mismatch", func(tok string) string { return "Bearer " + tok }, 2, 400, "failed_precondition"},
	}
	for _, tr := range transports {
		for _, tc := range cases {
			t.Run(tr.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				l := vmretest.NewLaunch(t, e, 1, nil)
				own := otherVMAddr() // the parallel cases share one engine
				body := `{"protocolVersion":` + strconv.Itoa(int(tc.version)) + `,"addr":"` + own + `"}`
				res := runCurl(t, t.Context(), addr, tr.flag, tc.auth(l.Token()), body)
				if res.httpVersion != tr.httpVersion {
					t.Errorf("curl spoke HTTP/%s; want HTTP/%s", res.httpVersion, tr.httpVersion)
				}
				if res.status != tc.wantStatus {
					t.Errorf("status %d; want %d (body %s)", res.status, tc.wantStatus, res.body)
				}
				if tc.wantCode == "" {
					checkCurlSuccess(t, res.body)
					vmretest.WaitClosed(t, l.Initialized(), "the launch's handshake")
					if got, v := l.Result(); got != own || v != 1 {
						t.Errorf("Result() = %q, %d; want %q, 1", got, v, own)
					}
					return
				}
				checkCurlError(t, res.body, tc.wantCode, tc.version)
				if isClosed(l.Initialized()) {
					t.Error("a rejected call completed the launch's handshake")
				}
			})
		}
	}
}

func checkCurlSuccess(t *testing.T, body []byte) {
	t.Helper()
	var got struct {
		HostName        string `json:"hostName"`
		ProtocolVersion int    `json:"protocolVersion"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if got.HostName != vmre.DefaultHostName || got.ProtocolVersion != 1 {
		t.Errorf("body %s; want hostName %q and protocolVersion 1", body, vmre.DefaultHostName)
	}
}

func checkCurlError(t *testing.T, body []byte, wantCode string, vmVersion uint) {
	t.Helper()
	var got connectError
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if got.Code != wantCode {
		t.Errorf("code %q; want %q (body %s)", got.Code, wantCode, body)
	}
	if wantCode != "failed_precondition" {
		return
	}
	if want := "protocol version mismatch vmre: 1 vm: " + strconv.Itoa(int(vmVersion)); got.Message != want {
		t.Errorf("message %q; want %q", got.Message, want)
	}
	if len(got.Details) != 1 || got.Details[0].Type != "vmre.runtime.v1.ProtocolVersionMismatch" {
		t.Fatalf("details %+v; want one vmre.runtime.v1.ProtocolVersionMismatch", got.Details)
	}
	// The Connect protocol sends a detail's value as base64, padding optional.
	raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(got.Details[0].Value, "="))
	if err != nil {
		t.Fatalf("detail value %q: %v", got.Details[0].Value, err)
	}
	var m runtimev1.ProtocolVersionMismatch
	if err := proto.Unmarshal(raw, &m); err != nil {
		t.Fatalf("detail value: %v", err)
	}
	if m.GetHostName() != "vmre" || m.GetHostProtocolVersion() != 1 || m.GetVmProtocolVersion() != uint32(vmVersion) {
		t.Errorf("detail %v; want host vmre, host version 1, vm version %d", &m, vmVersion)
	}
}
