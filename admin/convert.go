package admin

import (
	"bytes"
	"encoding/json"
	"slices"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
	"github.com/vmre/vmre/internal/safetext"
	"github.com/vmre/vmre/supervise"
)

var states = map[supervise.State]adminv1.VMState{
	supervise.StateStarting:  adminv1.VMState_VM_STATE_STARTING,
	supervise.StateRunning:   adminv1.VMState_VM_STATE_RUNNING,
	supervise.StateBackoff:   adminv1.VMState_VM_STATE_BACKOFF,
	supervise.StateCrashLoop: adminv1.VMState_VM_STATE_CRASHLOOP,
	supervise.StateStopped:   adminv1.VMState_VM_STATE_STOPPED,
	supervise.StateExited:    adminv1.VMState_VM_STATE_EXITED,
	supervise.StateFailed:    adminv1.VMState_VM_STATE_FAILED,
	supervise.StateWaiting:   adminv1.VMState_VM_STATE_WAITING,
	supervise.StateLost:      adminv1.VMState_VM_STATE_LOST,
	supervise.StateUnhealthy: adminv1.VMState_VM_STATE_UNHEALTHY,
}

// View is the admin API's view of a VM: the one view that ListVMs,
// GetVM, WatchVMs, the node's GET /v1/vms and vmre ps all show. Its last
// exit and error are those of the VM's latest attempt, as the supervisor
// keeps them: a launch that failed before its handshake shows its own
// exit, or none, and never an earlier run's.
func (s *Service) View(vm supervise.VM) *adminv1.VM {
	p := &adminv1.VM{
		Name:     safetext.Valid(vm.Name),
		State:    states[vm.State],
		Since:    timestamppb.New(vm.Since),
		Launches: int32(vm.Launches),
		Restarts: int32(vm.Restarts),
	}
	if vm.Err != nil {
		p.Error = safetext.Valid(vm.Err.Error()) // it may quote the VM's stderr
	}
	p.Remote, p.Peer, p.CertSha256, p.CertSpkiSha256 = vm.Remote, safetext.Valid(vm.Peer), safetext.Valid(vm.CertSHA256), safetext.Valid(vm.CertSPKI)
	if vm.State == supervise.StateRunning || vm.State == supervise.StateUnhealthy { // an unhealthy VM runs until it is stopped
		p.Pid, p.Addr, p.ProtocolVersion = int32(vm.Pid), safetext.Valid(vm.Addr), uint32(vm.ProtocolVersion)
		p.StartedAt, p.Handshake = timestamppb.New(vm.Started), durationpb.New(vm.Handshake)
	}
	if vm.State == supervise.StateBackoff || vm.State == supervise.StateCrashLoop {
		p.Attempt, p.Backoff, p.NextAttempt = int32(vm.Attempt), durationpb.New(vm.Delay), timestamppb.New(vm.NextAttempt)
	}
	if e := vm.LastExit; e != nil {
		p.LastExit = &adminv1.Exit{Code: int32(e.Code), Signal: e.Signal, Stage: e.Stage.String(),
			Ran: durationpb.New(e.Ran), Summary: safetext.Valid(e.String())}
	}
	if vm.Rollout != nil {
		p.Rollout = RolloutView(*vm.Rollout)
	}
	if s.describe != nil {
		d := s.describe(vm.Name)
		p.Aliases, p.Digest, p.Pinned, p.Removed, p.Pending = validAll(d.Aliases), d.Digest, d.Pinned, d.Removed, d.Pending
		p.Sandbox = d.Sandbox
	}
	return p
}

// validAll makes each string valid UTF-8, as protobuf strings must be
// (docs/NODE.md): a VM's names, its error and its output may hold any
// bytes; the text is otherwise kept as it is, control characters included,
// for the client to escape on a terminal.
func validAll(ss []string) []string {
	for i, s := range ss {
		if v := safetext.Valid(s); v != s {
			ss = slices.Clone(ss)
			for j := i; j < len(ss); j++ {
				ss[j] = safetext.Valid(ss[j])
			}
			return ss
		}
	}
	return ss
}

// JSON is m as the admin API's JSON: protojson with the proto's field
// names, every scalar field present (restarts: 0 included), indented two
// spaces with one space after each colon, the same from run to run (unlike
// protojson's own spacing), so that scripts and tests may grep it. It is
// the JSON of GET /v1/vms and vmre ps --json.
func JSON(m proto.Message) ([]byte, error) {
	return marshalJSON(m, func(out *bytes.Buffer, b []byte) error { return json.Indent(out, b, "", "  ") })
}

// JSONLine is m as JSON on one line, for a stream of messages (vmre
// events --json, logs --json: one message a line, as jq and docker
// events read them): the fields and names of JSON, compact.
func JSONLine(m proto.Message) ([]byte, error) { return marshalJSON(m, json.Compact) }

// marshalJSON marshals m with the field names of the protos and every
// field, and lays it out with layout (protojson's own spacing varies
// from build to build, on purpose), with a newline.
func marshalJSON(m proto.Message, layout func(*bytes.Buffer, []byte) error) ([]byte, error) {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := layout(&out, b); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}
