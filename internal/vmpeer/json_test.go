package vmpeer

import (
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// gRPC's own health.proto spells SERVING; the prefixed spelling of
// connect-go's copy, the number, and the proto field name read the same.
func TestEnumJSONUnmarshal(t *testing.T) {
	for _, tc := range []struct {
		body string
		want healthpb.HealthCheckResponse_ServingStatus
	}{
		{`{"status":"SERVING"}`, healthpb.HealthCheckResponse_SERVING},
		{`{"status":"SERVING_STATUS_SERVING"}`, healthpb.HealthCheckResponse_SERVING},
		{`{"status":"SERVING_STATUS_NOT_SERVING"}`, healthpb.HealthCheckResponse_NOT_SERVING},
		{`{"status":1}`, healthpb.HealthCheckResponse_SERVING},
		{`{"status":"SERVING","extra":{"a":1}}`, healthpb.HealthCheckResponse_SERVING},
		{`{"status":"NO_SUCH_NAME"}`, healthpb.HealthCheckResponse_UNKNOWN},
		{`{}`, healthpb.HealthCheckResponse_UNKNOWN},
		{``, healthpb.HealthCheckResponse_UNKNOWN},
	} {
		var res healthpb.HealthCheckResponse
		if err := (enumJSON{}).Unmarshal([]byte(tc.body), &res); err != nil {
			t.Errorf("%s: %v", tc.body, err)
			continue
		}
		if res.Status != tc.want {
			t.Errorf("%s: status %v, want %v", tc.body, res.Status, tc.want)
		}
	}
	if err := (enumJSON{}).Unmarshal([]byte(`{"status":`), new(healthpb.HealthCheckResponse)); err == nil {
		t.Error("broken JSON: no error")
	}
}

func TestUpperSnake(t *testing.T) {
	for in, want := range map[string]string{"ServingStatus": "SERVING_STATUS", "Kind": "KIND", "": ""} {
		if got := upperSnake(in); got != want {
			t.Errorf("upperSnake(%q) = %q, want %q", in, got, want)
		}
	}
}
