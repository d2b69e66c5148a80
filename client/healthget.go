package client

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
)

// healthCheckPath is grpc.health.v1's Check.
const healthCheckPath = "/grpc.health.v1.Health/Check"

// healthGET answers GET /grpc.health.v1.Health/Check, as a Kubernetes
// probe (httpGet over HTTPS) sends it, from the VM's own health check: 200
// when it answers SERVING to the service "", 503 otherwise. Every other
// request goes to h as it is. A remote VM serves it (docs/REMOTE.md); the
// health check itself stays a Connect or gRPC call, which a probe cannot
// make.
func healthGET(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != healthCheckPath {
			h.ServeHTTP(w, r)
			return
		}
		check, err := http.NewRequestWithContext(r.Context(), http.MethodPost, healthCheckPath, strings.NewReader("{}"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		check.Header.Set("Content-Type", "application/json")
		rec := &recorder{header: make(http.Header), code: http.StatusOK}
		h.ServeHTTP(rec, check)
		var res struct {
			Status  string `json:"status"`
			Message string `json:"message"`
		}
		json.Unmarshal(rec.body.Bytes(), &res)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		switch {
		case rec.code == http.StatusOK && (res.Status == "SERVING" || res.Status == "SERVING_STATUS_SERVING"):
			w.Write([]byte("SERVING\n"))
		case rec.code == http.StatusOK:
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(res.Status + "\n"))
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("the VM's health check answered HTTP " + http.StatusText(rec.code) + ": " + res.Message + "\n"))
		}
	})
}

// recorder keeps the answer of a health check, which is a few bytes.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header  { return r.header }
func (r *recorder) WriteHeader(code int) { r.code = code }
func (r *recorder) Write(b []byte) (int, error) {
	if r.body.Len()+len(b) > 4<<10 {
		return len(b), nil // not a health answer: its status is what counts
	}
	return r.body.Write(b)
}
