package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
)

// Limits of initializeUnary.
const (
	unaryDialTimeout = 5 * time.Second
	maxAnswerBytes   = 64 << 10
)

// mismatchDetail is the type of the error detail that carries a version
// mismatch (vmre.runtime.v1.ProtocolVersionMismatch).
const mismatchDetail = "vmre.runtime.v1.ProtocolVersionMismatch"

// initializeUnary calls Initialize with the Connect protocol and binary
// protobuf, as one HTTP/1.1 POST on a connection of its own, written and
// read by hand (docs/PROTOCOL.md has the wire format). It is the default:
// in a process that has just started, it completes the handshake in less
// than half the time of a connect-go client, which sets up net/http's
// transport (a dialling goroutine, a reader and a writer per connection)
// and connect's codecs for one call.
//
// Its errors are those of the connect-go client: a *connect.Error with the
// engine's code and message, or with CodeUnavailable when the engine could
// not be reached; a version mismatch is a *vmre.VersionMismatchError.
func (ec *engineClient) initializeUnary(ctx context.Context, vmAddr string) (*Host, error) {
	var body []byte
	body = protowire.AppendTag(body, 1, protowire.VarintType)
	body = protowire.AppendVarint(body, uint64(ec.o.protocolVersion))
	body = protowire.AppendTag(body, 2, protowire.BytesType)
	body = protowire.AppendString(body, vmAddr)

	conn, err := (&net.Dialer{Timeout: unaryDialTimeout}).DialContext(ctx, "tcp", ec.o.engineAddr)
	if err != nil {
		return nil, ec.handshakeError(connect.NewError(connect.CodeUnavailable, err), nil)
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	req := "POST " + runtimev1connect.RuntimeServiceInitializeProcedure + " HTTP/1.1\r\n" +
		"Host: " + ec.o.engineAddr + "\r\n" +
		"Content-Type: application/proto\r\n" +
		"Connect-Protocol-Version: 1\r\n" +
		"Authorization: Bearer " + ec.o.token + "\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" +
		"Connection: close\r\n\r\n"
	if _, err := conn.Write(append([]byte(req), body...)); err != nil {
		return nil, ec.handshakeError(connect.NewError(connect.CodeUnavailable, contextError(ctx, err)), nil)
	}
	ec.sent()
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, ec.handshakeError(connect.NewError(connect.CodeUnavailable, contextError(ctx, err)), nil)
	}
	defer res.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(res.Body, maxAnswerBytes))
	if err != nil {
		return nil, ec.handshakeError(connect.NewError(connect.CodeUnavailable, contextError(ctx, err)), nil)
	}
	if res.StatusCode != http.StatusOK {
		cerr, mismatch := unaryError(res, answer)
		return nil, ec.handshakeError(cerr, mismatch)
	}
	if cerr := answerTypeError(res.Header.Get("Content-Type")); cerr != nil {
		return nil, ec.handshakeError(cerr, nil)
	}
	host, err := decodeInitializeResponse(answer)
	if err != nil {
		return nil, ec.handshakeError(connect.NewError(connect.CodeInternal, err), nil)
	}
	return host, nil
}

// contextError is ctx's error when ctx has ended (the connection's deadline
// passed because of it), else err.
func contextError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// answerTypeError is the error of a successful answer whose content type is
// not the binary protobuf asked for, as connect-go has it: unknown for an
// answer that is no Connect answer at all (a server that is no engine), and
// internal for another codec's. Without it, any 200 with an empty body
// would pass for an accepted handshake.
func answerTypeError(contentType string) *connect.Error {
	const want = "application/proto"
	switch {
	case contentType == want:
		return nil
	case !strings.HasPrefix(contentType, "application/"):
		return connect.NewError(connect.CodeUnknown, fmt.Errorf("invalid content-type: %q; expecting %q", contentType, want))
	}
	return connect.NewError(connect.CodeInternal, fmt.Errorf("invalid content-type: %q; expecting %q", contentType, want))
}

// decodeInitializeResponse reads an InitializeResponse {1: host_name,
// 2: protocol_version}.
func decodeInitializeResponse(b []byte) (*Host, error) {
	var host Host
	err := decodeFields(b, func(num protowire.Number, v uint64, s []byte) {
		switch num {
		case 1:
			host.Name = string(s)
		case 2:
			host.ProtocolVersion = uint(uint32(v))
		}
	})
	if err != nil {
		return nil, fmt.Errorf("the engine's answer is not an InitializeResponse: %w", err)
	}
	return &host, nil
}

// decodeFields calls f for each field of a protobuf message: varints with
// v, length-delimited fields with s. Other wire types are skipped.
func decodeFields(b []byte, f func(num protowire.Number, v uint64, s []byte)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			f(num, v, nil)
			b = b[n:]
		case protowire.BytesType:
			s, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			f(num, 0, s)
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	return nil
}

// unaryError reads a Connect unary error answer, as connect-go reads it: a
// JSON body with the code, the message and details; the code of its HTTP
// status when the code is missing or unknown; and only that code, with the
// status as message, for an answer that is no Connect error at all (a
// proxy's, an engine that predates a path). It also returns the version
// mismatch a detail carries.
func unaryError(res *http.Response, body []byte) (*connect.Error, *vmre.VersionMismatchError) {
	var wire struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Details []struct {
			Type  string `json:"type"`
			Value string `json:"value"`
		} `json:"details"`
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" && ct != "application/json; charset=utf-8" ||
		json.Unmarshal(body, &wire) != nil {
		return connect.NewError(httpStatusCode(res.StatusCode), errors.New(res.Status)), nil
	}
	var code connect.Code
	if code.UnmarshalText([]byte(wire.Code)) != nil || code == 0 {
		code = httpStatusCode(res.StatusCode)
	}
	var mismatch *vmre.VersionMismatchError
	for _, d := range wire.Details {
		if d.Type != mismatchDetail {
			continue
		}
		raw, err := connect.DecodeBinaryHeader(d.Value)
		if err != nil {
			continue
		}
		var m vmre.VersionMismatchError
		if decodeFields(raw, func(num protowire.Number, v uint64, s []byte) {
			switch num {
			case 1:
				m.HostName = string(s)
			case 2:
				m.HostVersion = uint(uint32(v))
			case 3:
				m.VMVersion = uint(uint32(v))
			}
		}) == nil {
			mismatch = &m
		}
	}
	return connect.NewError(code, errors.New(wire.Message)), mismatch
}

// httpStatusCode is the code of an HTTP status that carries no Connect
// error, as the Connect protocol specifies.
func httpStatusCode(status int) connect.Code {
	switch status {
	case http.StatusBadRequest:
		return connect.CodeInternal
	case http.StatusUnauthorized:
		return connect.CodeUnauthenticated
	case http.StatusForbidden:
		return connect.CodePermissionDenied
	case http.StatusNotFound:
		return connect.CodeUnimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return connect.CodeUnavailable
	}
	return connect.CodeUnknown
}
