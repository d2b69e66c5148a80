package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/vmre/vmre"
	runtimev1 "github.com/vmre/vmre/gen/vmre/runtime/v1"
	"github.com/vmre/vmre/gen/vmre/runtime/v1/runtimev1connect"
	"github.com/vmre/vmre/internal/h2c"
	"github.com/vmre/vmre/tlspin"
)

// ErrNotPlugin is returned when the program was not started by a vmre host:
// the engine address or token is missing from the environment.
var ErrNotPlugin = errors.New("this program is a vmre VM plugin, meant to be started by a host " +
	"(`vmre run PLUGIN`, or a node that embeds vmre), which sets " + vmre.EngineAddressKey +
	" and " + vmre.EngineTokenKey + ". To run it by hand or in a debugger, start an engine with " +
	"`vmre serve`, export the two lines it prints, and start this program again")

// Host is what the engine says of the host in the handshake.
type Host struct {
	// Name is the host's name, such as "vmre".
	Name string
	// ProtocolVersion is the protocol version the host agreed to speak.
	ProtocolVersion uint
}

// Initialize calls the host's engine back with vmAddr, the host:port of the
// VM's own server, completing the handshake. The engine address and token
// come from the environment unless WithEngine sets them.
//
// Errors wrap vmre.ErrHandshakeFailed; a version mismatch also wraps
// vmre.ErrProtocolVersionMismatch (as a *vmre.VersionMismatchError), and a
// missing environment is ErrNotPlugin.
func Initialize(ctx context.Context, vmAddr string, opts ...Option) (*Host, error) {
	o := newOptions(opts)
	ec, err := newEngineClient(o)
	if err != nil {
		return nil, err
	}
	defer ec.close()
	return ec.initialize(ctx, vmAddr)
}

// engineClient calls one engine with one launch's token.
type engineClient struct {
	o     *options
	pings tlspin.Pings // a remote VM's pings of the engine's connection

	// onSent, when set, is called once the Initialize request is on its
	// way: the VM waits for the answer from then on.
	onSent func()

	mu     sync.Mutex // guards rpc and closer, made on first use
	rpc    runtimev1connect.RuntimeServiceClient
	closer interface{ CloseIdleConnections() }
}

func newEngineClient(o *options) (*engineClient, error) {
	switch {
	case o.engineAddr == "" && o.token == "":
		return nil, ErrNotPlugin
	case o.engineAddr == "":
		return nil, fmt.Errorf("%w (%s is not set)", ErrNotPlugin, vmre.EngineAddressKey)
	case o.token == "":
		return nil, fmt.Errorf("%w (%s is not set)", ErrNotPlugin, vmre.EngineTokenKey)
	}
	if o.protocolVersion == 0 || o.protocolVersion > math.MaxUint32 {
		return nil, fmt.Errorf("%w: protocol version %d is out of range (1 to %d)", vmre.ErrInvalidConfig, o.protocolVersion, uint32(math.MaxUint32))
	}
	ec := &engineClient{o: o, pings: tlspin.DefaultPings}
	if o.engineCert != "" {
		sum, err := tlspin.ParseFingerprint(o.engineCert)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", vmre.ErrInvalidConfig, vmre.EngineCertKey, err)
		}
		o.engineCert = sum
	}
	if o.enginePing != "" {
		d, err := time.ParseDuration(o.enginePing)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%w: %s=%q is not a duration such as 5s (how long the connection to the engine stays silent before a ping)",
				vmre.ErrInvalidConfig, vmre.EnginePingKey, o.enginePing)
		}
		ec.pings = tlspin.Pings{Interval: d, Timeout: d}
	}
	return ec, nil
}

// client returns the connect-go client of the engine, made on first use.
func (ec *engineClient) client() runtimev1connect.RuntimeServiceClient {
	ec.mu.Lock()
	defer ec.mu.Unlock()
	if ec.rpc == nil {
		o := ec.o
		httpClient := o.httpClient
		scheme := "http://"
		switch {
		case o.engineCert != "":
			// An engine on another host: TLS, trusting its certificate's
			// fingerprint alone, over HTTP/2 whose pings notice a cut link.
			scheme = "https://"
			if httpClient == nil {
				// The fingerprint was checked by newEngineClient.
				c, _ := tlspin.NewClient(o.engineCert, ec.pings)
				httpClient, ec.closer = c, c
			}
		case httpClient == nil:
			// gRPC needs HTTP/2; Connect and gRPC-Web use HTTP/1.1, which
			// costs the host fewer goroutines for a lease held over it.
			c := h2c.NewHTTP1Client()
			if o.protocol == ProtocolGRPC {
				c = h2c.NewClient()
			}
			httpClient, ec.closer = c, c
		}
		var protocolOpt []connect.ClientOption
		switch o.protocol {
		case ProtocolGRPC:
			protocolOpt = append(protocolOpt, connect.WithGRPC())
		case ProtocolGRPCWeb:
			protocolOpt = append(protocolOpt, connect.WithGRPCWeb())
		}
		ec.rpc = runtimev1connect.NewRuntimeServiceClient(httpClient, scheme+o.engineAddr, protocolOpt...)
	}
	return ec.rpc
}

// close closes the idle connections of the connect-go client, if it was made.
func (ec *engineClient) close() {
	ec.mu.Lock()
	closer := ec.closer
	ec.mu.Unlock()
	if closer != nil {
		closer.CloseIdleConnections()
	}
}

// sent calls onSent, if set.
func (ec *engineClient) sent() {
	if ec.onSent != nil {
		ec.onSent()
	}
}

func (ec *engineClient) authorize(h http.Header) { h.Set("Authorization", "Bearer "+ec.o.token) }

func (ec *engineClient) initialize(ctx context.Context, vmAddr string) (*Host, error) {
	return ec.initializeTLS(ctx, vmAddr, nil)
}

// initializeTLS is initialize for a VM whose server speaks TLS with the DER
// certificate cert (nil for plain HTTP).
func (ec *engineClient) initializeTLS(ctx context.Context, vmAddr string, cert []byte) (*Host, error) {
	if cert == nil && ec.o.engineCert == "" && ec.o.protocol == ProtocolConnect && ec.o.httpClient == nil {
		return ec.initializeUnary(ctx, vmAddr)
	}
	var certSum string
	if cert != nil {
		certSum = tlspin.Fingerprint(cert)
	}
	ec.sent() // connect-go sends and waits in one call
	req := connect.NewRequest(&runtimev1.InitializeRequest{
		ProtocolVersion: uint32(ec.o.protocolVersion),
		Addr:            vmAddr,
		CertSha256:      certSum,
		Certificate:     cert,
	})
	ec.authorize(req.Header())
	res, err := ec.client().Initialize(ctx, req)
	if err != nil {
		return nil, ec.handshakeError(err, mismatchOf(err))
	}
	return &Host{Name: res.Msg.GetHostName(), ProtocolVersion: uint(res.Msg.GetProtocolVersion())}, nil
}

// mismatchOf is the version mismatch that a refusal's detail carries, or nil.
func mismatchOf(err error) *vmre.VersionMismatchError {
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeFailedPrecondition {
		return nil
	}
	for _, d := range ce.Details() {
		msg, derr := d.Value()
		if m, ok := msg.(*runtimev1.ProtocolVersionMismatch); derr == nil && ok {
			return &vmre.VersionMismatchError{
				HostName:    m.GetHostName(),
				HostVersion: uint(m.GetHostProtocolVersion()),
				VMVersion:   uint(m.GetVmProtocolVersion()),
			}
		}
	}
	return nil
}

// handshakeError is the error of a failed Initialize: the version mismatch
// when the engine refused the version, else err, the engine's refusal or
// the failure to reach it.
func (ec *engineClient) handshakeError(err error, mismatch *vmre.VersionMismatchError) error {
	if mismatch != nil {
		return fmt.Errorf("%w: %w", vmre.ErrHandshakeFailed, mismatch)
	}
	var certMismatch *tlspin.MismatchError
	if errors.As(err, &certMismatch) {
		return fmt.Errorf("%w: the engine at %s is not the one %s names: %w", vmre.ErrHandshakeFailed, ec.o.engineAddr, vmre.EngineCertKey, certMismatch)
	}
	return fmt.Errorf("%w: initialize with the engine at %s: %w", vmre.ErrHandshakeFailed, ec.o.engineAddr, err)
}

// lease holds the launch's lease until the host ends it, the connection
// breaks or ctx ends. It returns nil when the host ended the lease, ctx's
// error when ctx ended it, and the stream's error otherwise.
func (ec *engineClient) lease(ctx context.Context) error {
	req := connect.NewRequest(&runtimev1.LeaseRequest{})
	ec.authorize(req.Header())
	stream, err := ec.client().Lease(ctx, req)
	if err != nil {
		return err
	}
	defer stream.Close()
	for stream.Receive() {
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return stream.Err()
}
