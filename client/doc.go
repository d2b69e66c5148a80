// Package client is the VM side of vmre: all a VM author imports.
//
// A VM built on Serve needs no other code for its lifecycle:
//
//	func main() {
//		mux := http.NewServeMux()
//		mux.Handle(myv1connect.NewMyServiceHandler(&myService{}))
//		if err := client.Serve(context.Background(), mux); err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//	}
//
// Serve listens on 127.0.0.1:0, calls the host's engine back with the
// listener's address (Initialize), serves the handler over HTTP/1.1 and h2c
// (so Connect, gRPC and gRPC-Web clients all work), holds a lease so that it
// shuts down when the host dies, and shuts down gracefully on SIGTERM,
// SIGINT or when its context ends.
//
// Started by hand, without the host's environment variables, Serve returns
// ErrNotPlugin, whose text explains how to run the VM under `vmre serve`.
package client
