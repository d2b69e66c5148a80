package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "github.com/vmre/vmre/gen/vmre/admin/v1"
)

// Enrollment is what a remote VM needs to reach its node.
type Enrollment struct {
	Name            string
	EngineAddr      string
	Token           string
	EngineCertSHA   string
	ProtocolVersion uint
	// Ping is how long the VM lets its connection to the engine stay
	// silent before it pings it: the node's (vmre.EnginePingKey).
	Ping time.Duration
}

// Enrollments are the node's remote VMs.
type Enrollments interface {
	// Enrollment returns the remote VM name's enrollment, or false when it
	// is not a remote VM.
	Enrollment(name string) (Enrollment, bool)
	// Rotate gives the remote VM name a new token.
	Rotate(name string) (Enrollment, error)
}

func (e Enrollment) proto() *adminv1.Enrollment {
	p := &adminv1.Enrollment{Name: e.Name, EngineAddr: e.EngineAddr, Token: e.Token,
		EngineCertSha256: e.EngineCertSHA, ProtocolVersion: uint32(e.ProtocolVersion)}
	if e.Ping > 0 {
		p.Ping = durationpb.New(e.Ping)
	}
	return p
}

// enrollment finds a remote VM's enrollment, or answers not_found.
func (s *Service) enrollment(name string) (Enrollment, error) {
	if s.enrollments == nil {
		return Enrollment{}, connect.NewError(connect.CodeNotFound, errors.New("this node enrolls no remote VMs: it has no --engine-listen"))
	}
	if s.resolve != nil {
		if n, ok := s.resolve(name); ok {
			name = n
		}
	}
	en, ok := s.enrollments.Enrollment(name)
	if !ok {
		return Enrollment{}, connect.NewError(connect.CodeNotFound,
			fmt.Errorf("no remote VM named %q: a remote VM is declared by a file NAME.remote in the plugin directory", name))
	}
	return en, nil
}

func (h handler) GetEnrollment(_ context.Context, req *connect.Request[adminv1.GetEnrollmentRequest]) (*connect.Response[adminv1.GetEnrollmentResponse], error) {
	s := h.s
	en, err := s.enrollment(req.Msg.GetName())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&adminv1.GetEnrollmentResponse{Enrollment: en.proto()}), nil
}

func (h handler) RotateEnrollment(_ context.Context, req *connect.Request[adminv1.RotateEnrollmentRequest]) (*connect.Response[adminv1.RotateEnrollmentResponse], error) {
	s := h.s
	en, err := s.enrollment(req.Msg.GetName())
	if err != nil {
		return nil, err
	}
	rotated, err := s.enrollments.Rotate(en.Name)
	if err != nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, err)
	}
	return connect.NewResponse(&adminv1.RotateEnrollmentResponse{Enrollment: rotated.proto()}), nil
}
