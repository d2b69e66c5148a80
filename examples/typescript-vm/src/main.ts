// A vmre VM plugin in TypeScript: the example chain of cmd/examplevm,
// served as vmre.example.v1.ChainService with grpc.health.v1 by Connect for
// Node.js over h2c, and the vmre handshake and lease made with a Connect
// client over HTTP/1.1. The contract it follows is docs/VM-AUTHORS.md.
//
//   npm ci                                   # installs and compiles to dist/
//   vmre run node examples/typescript-vm/dist/main.js
//
// Given VMRE_RUNTIME_ENGINE_CERT_SHA256 too (`vmre remote env NAME` prints
// it), it is a remote VM: it reaches the engine over TLS and HTTP/2 with
// pings, checking the certificate's fingerprint before it sends its token;
// serves TLS itself with a certificate made at start by the openssl
// command, announcing it; holds the lease, and exits 75 when the node ends
// its session or is lost, for its orchestrator to start it again.

import * as http from "node:http";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";

import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport } from "@connectrpc/connect-node";

import { BlockNotFoundError, Chain, DataTooLargeError, type Block } from "./chain.js";
import { log } from "./log.js";
import * as remote from "./remote.js";
import { ChainService, BlockSchema } from "./gen/vmre/example/v1/chain_pb.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "./gen/grpc/health/v1/health_pb.js";
import { ProtocolVersionMismatchSchema, RuntimeService } from "./gen/vmre/runtime/v1/runtime_pb.js";

/** The variables a host sets; without them this program is not running under a host. */
const engineAddressKey = "VMRE_RUNTIME_ENGINE_ADDR";
const engineTokenKey = "VMRE_RUNTIME_ENGINE_TOKEN";

/** The vmre protocol version this VM was written for. */
const protocolVersion = 1;

/** Exit codes. */
const exitOK = 0;
const exitFailure = 1;
const exitUsage = 2; // bad flags, or started without the host's variables, or with bad ones
const exitRestart = 75; // a remote VM whose node ended its session or was lost: start it again

const usage = `Usage: node dist/main.js [--protocol-version N]

A vmre VM plugin in TypeScript, meant to be started by a host:
  vmre run node examples/typescript-vm/dist/main.js

  --protocol-version N   announce protocol version N instead of ${protocolVersion}
                         (to see the host refuse a VM of another version)
`;

const notPlugin =
  "this program is a vmre VM plugin, meant to be started by a host (`vmre run PLUGIN`, " +
  `or a node that embeds vmre), which sets ${engineAddressKey} and ${engineTokenKey}. ` +
  "To run it by hand or in a debugger, start an engine with `vmre serve`, export the " +
  "two lines it prints, and start this program again";

/** Parses the command line; returns the version to announce, or an exit code. */
function parseArgs(args: string[]): { version: number } | { exit: number } {
  let version = protocolVersion;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--help" || arg === "-h") {
      process.stdout.write(usage);
      return { exit: exitOK };
    }
    const value = arg === "--protocol-version" ? args[++i] : arg.startsWith("--protocol-version=") ? arg.slice(19) : undefined;
    if (value === undefined || !/^[0-9]+$/.test(value) || Number(value) < 1 || Number(value) > 0xffffffff) {
      process.stderr.write(`bad argument ${JSON.stringify(arg)}${value === undefined ? "" : " " + JSON.stringify(value)}\n\n${usage}`);
      return { exit: exitUsage };
    }
    version = Number(value);
  }
  return { version };
}

async function main(): Promise<number> {
  // Catch SIGTERM and SIGINT from the start: the host may stop the VM at
  // any time, even during the handshake, and expects exit 0 then.
  const stop = new AbortController();
  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    process.on(sig, () => stop.abort(`received ${sig}`));
  }

  const parsed = parseArgs(process.argv.slice(2));
  if ("exit" in parsed) {
    return parsed.exit;
  }
  const engineAddr = process.env[engineAddressKey] ?? "";
  const token = process.env[engineTokenKey] ?? "";
  if (engineAddr === "" || token === "") {
    const missing = [engineAddr === "" ? engineAddressKey : "", token === "" ? engineTokenKey : ""].filter(Boolean);
    process.stderr.write(`${notPlugin} (${missing.join(" and ")} not set)\n`);
    return exitUsage;
  }

  const started = Date.now();
  const chain = new Chain();
  let status = ServingStatus.NOT_SERVING;
  const certFingerprint = process.env[remote.engineCertKey] ?? "";
  const isRemote = certFingerprint !== "";
  log("info", "typescript-vm starting", {
    protocol_version: parsed.version,
    node: process.version,
    genesis_id: chain.lastAccepted().id,
    remote: isRemote,
  });

  // A remote VM's settings: its orchestrator's addresses, the engine's
  // fingerprint and ping, its own certificate.
  let cfg: RemoteConfig | undefined;
  if (isRemote) {
    try {
      cfg = remoteConfig(certFingerprint);
    } catch (err) {
      if (err instanceof remote.UsageError) {
        log("error", "typescript-vm cannot run as configured", { error: err.message });
        return exitUsage;
      }
      throw err;
    }
  }

  // 1. Listen and serve: on a free loopback port, or for a remote VM where
  // its orchestrator says, over TLS.
  const adapter = connectNodeAdapter({ routes: routes(chain, () => status) });
  const handler = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    // A Kubernetes probe (httpGet over HTTPS) of the health check: 200
    // while serving, 503 otherwise.
    if (req.method === "GET" && req.url.split("?")[0] === `/${Health.typeName}/Check`) {
      const serving = status === ServingStatus.SERVING;
      res.writeHead(serving ? 200 : 503, { "content-type": "text/plain; charset=utf-8" });
      res.end(serving ? "SERVING\n" : "NOT_SERVING\n");
      return;
    }
    adapter(req, res);
  };
  let cert: { key: string; cert: string; der: Buffer } | undefined;
  let server: http2.Http2Server | http2.Http2SecureServer;
  if (cfg && !cfg.plaintext) {
    server = http2.createSecureServer({ allowHTTP1: true }, handler);
  } else {
    server = http2.createServer(handler);
  }
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(cfg?.listenPort ?? 0, cfg?.listenHost ?? "127.0.0.1", () => resolve());
    });
  } catch (err) {
    log("error", "typescript-vm cannot listen", { error: String(err) });
    return exitFailure;
  }
  const bound = server.address() as AddressInfo;
  let addr = `127.0.0.1:${bound.port}`;
  if (cfg) {
    try {
      addr = remote.advertisedAddr(cfg.advertise, bound.address, bound.port);
      if (!cfg.plaintext) {
        cert = remote.selfSigned(remote.splitHostPort(addr, remote.advertiseAddrKey)[0]);
        (server as http2.Http2SecureServer).setSecureContext({ key: cert.key, cert: cert.cert });
      }
    } catch (err) {
      server.close();
      if (err instanceof remote.UsageError) {
        log("error", "typescript-vm cannot run as configured", { error: err.message });
        return exitUsage;
      }
      throw err;
    }
  }
  status = ServingStatus.SERVING;

  // 2. The handshake: tell the host where we serve, with its token.
  const agent = new http.Agent({ keepAlive: true });
  const auth: Interceptor = (next) => (req) => {
    req.header.set("Authorization", `Bearer ${token}`);
    return next(req);
  };
  const engine = createClient(
    RuntimeService,
    cfg
      ? createConnectTransport({
          // HTTP/2 over TLS, pinned, with pings that notice a cut link.
          baseUrl: `https://${engineAddr}`,
          httpVersion: "2",
          nodeOptions: { createConnection: remote.pinnedConnection(cfg.fingerprint) },
          pingIntervalMs: cfg.pingMs,
          pingTimeoutMs: cfg.pingMs,
          pingIdleConnection: true,
          interceptors: [auth],
        })
      : createConnectTransport({
          baseUrl: `http://${engineAddr}`,
          httpVersion: "1.1",
          nodeOptions: { agent },
          interceptors: [auth],
        }),
  );
  let reason: string;
  let code = exitOK;
  try {
    const host = await engine.initialize(
      { protocolVersion: parsed.version, addr, certSha256: cert ? remote.sha256Hex(cert.der) : "", certificate: cert?.der },
      { signal: stop.signal },
    );
    log("info", "handshake succeeded", { addr, host: host.hostName, protocol_version: host.protocolVersion, tls: cert !== undefined });
    // 3. Hold the lease until the host ends it or we are told to stop.
    if (cfg) {
      ({ reason, code } = await holdRemoteLease(engine, stop.signal));
    } else {
      reason = await holdLease(engine, stop.signal);
    }
  } catch (err) {
    if (stop.signal.aborted && ConnectError.from(err).code === Code.Canceled) {
      reason = `${String(stop.signal.reason)} during the handshake`;
    } else {
      // The host refused the handshake (or could not be reached). It stops
      // a VM it refused at once, so SIGTERM may already be here.
      reason = "the handshake failed";
      code = exitFailure;
      handshakeFailed(err, parsed.version);
    }
  }

  // 4. Shut down gracefully: stop taking calls, let those in flight finish.
  status = ServingStatus.NOT_SERVING;
  log("info", "shutting down", { reason });
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    for (const s of sessions) {
      s.close();
    }
  });
  agent.destroy();
  log(code === exitOK ? "info" : "error", "typescript-vm stopped", {
    last_height: chain.lastAccepted().height,
    uptime_ms: Date.now() - started,
  });
  return code;
}

/**
 * Holds the lease: a Connect server stream the engine keeps open while the
 * host runs this VM. Returns why it ended.
 */
async function holdLease(engine: ReturnType<typeof createClient<typeof RuntimeService>>, stop: AbortSignal): Promise<string> {
  try {
    for await (const _ of engine.lease({}, { signal: stop })) {
      // The engine sends one message when the lease is granted, and may send
      // more to keep the stream from idling out; none carries data.
    }
    return "the host ended the lease";
  } catch (err) {
    if (stop.aborted) {
      return String(stop.reason);
    }
    if (err instanceof ConnectError && err.code === Code.Unimplemented) {
      // An engine without leases: serve until SIGTERM.
      await new Promise((resolve) => stop.addEventListener("abort", resolve, { once: true }));
      return String(stop.reason);
    }
    log("warn", "lost the lease to the host", { error: ConnectError.from(err).message });
    return "lost the lease to the host";
  }
}

/** A remote VM's settings, from its environment. */
type RemoteConfig = {
  fingerprint: string;
  pingMs: number;
  listenHost: string;
  listenPort: number;
  advertise: string;
  plaintext: boolean;
};

function remoteConfig(fingerprint: string): RemoteConfig {
  const [listenHost, listenPort] = remote.splitHostPort(process.env[remote.listenAddrKey] || "0.0.0.0:0", remote.listenAddrKey);
  return {
    fingerprint: remote.parseFingerprint(fingerprint),
    pingMs: remote.parseDuration(process.env[remote.enginePingKey] || "5s"),
    listenHost,
    listenPort,
    advertise: process.env[remote.advertiseAddrKey] ?? "",
    plaintext: process.env[remote.plaintextKey] === "1",
  };
}

/**
 * Holds a remote VM's lease. Returns why it ended and the exit code: 0
 * when the node's operator stopped the VM (a clean end) or a signal came,
 * 75 when the node ended the session for it to start again (aborted) or
 * was lost, 1 when the node refused the lease.
 */
async function holdRemoteLease(
  engine: ReturnType<typeof createClient<typeof RuntimeService>>,
  stop: AbortSignal,
): Promise<{ reason: string; code: number }> {
  try {
    for await (const _ of engine.lease({}, { signal: stop })) {
      // Keep-alives: the lease holds.
    }
    log("info", "the lease ended", { reason: "the node's operator stopped this VM" });
    return { reason: "the node's operator stopped this VM", code: exitOK };
  } catch (err) {
    if (stop.aborted) {
      return { reason: String(stop.reason), code: exitOK };
    }
    const cerr = ConnectError.from(err);
    const answered = [Code.Unauthenticated, Code.InvalidArgument, Code.FailedPrecondition, Code.AlreadyExists, Code.NotFound];
    if (cerr.code === Code.Aborted) {
      log("warn", "the lease ended", { reason: "the node ended this VM's session, to be started again", error: cerr.rawMessage });
      return { reason: "the node ended this VM's session, to be started again", code: exitRestart };
    }
    if (answered.includes(cerr.code)) {
      log("error", "the lease ended", { reason: "the node refused the lease", code: Code[cerr.code], error: cerr.rawMessage });
      return { reason: "the node refused the lease", code: exitFailure };
    }
    log("warn", "the lease ended", { reason: "lost the lease to the node: the link broke or the node is gone", error: cerr.message });
    return { reason: "lost the lease to the node", code: exitRestart };
  }
}

/** Logs why the handshake failed, with both versions for a mismatch. */
function handshakeFailed(err: unknown, version: number): void {
  const cerr = ConnectError.from(err);
  const mismatch = cerr.findDetails(ProtocolVersionMismatchSchema)[0];
  if (mismatch) {
    log("error", "protocol version mismatch", {
      error: cerr.rawMessage,
      host: mismatch.hostName,
      host_protocol_version: mismatch.hostProtocolVersion,
      vm_protocol_version: mismatch.vmProtocolVersion,
      hint: `run this VM with --protocol-version ${mismatch.hostProtocolVersion}, or a host that speaks ${version}`,
    });
    return;
  }
  log("error", "handshake failed", { code: Code[cerr.code], error: cerr.rawMessage });
}

/** The VM's services: its chain and grpc.health.v1. */
function routes(chain: Chain, status: () => ServingStatus) {
  const known = new Set(["", ChainService.typeName]);
  return (router: ConnectRouter) => {
    router.service(ChainService, {
      buildBlock(req) {
        const b = chainCall(() => chain.build(req.data));
        log("info", "built block", { height: b.height, id: b.id, bytes: b.data.length });
        return { block: toProto(b) };
      },
      getBlock(req) {
        return { block: toProto(chainCall(() => chain.get(req.height))) };
      },
      lastAccepted() {
        return { block: toProto(chain.lastAccepted()) };
      },
    });
    // Check only: Watch answers unimplemented, which the host never calls.
    router.service(Health, {
      check(req) {
        if (!known.has(req.service)) {
          throw new ConnectError(`unknown service ${JSON.stringify(req.service)}`, Code.NotFound);
        }
        return { status: status() };
      },
    });
  };
}

/** Maps the chain's errors to Connect codes. */
function chainCall(f: () => Block): Block {
  try {
    return f();
  } catch (err) {
    if (err instanceof DataTooLargeError) {
      throw new ConnectError(err.message, Code.InvalidArgument);
    }
    if (err instanceof BlockNotFoundError) {
      throw new ConnectError(err.message, Code.NotFound);
    }
    throw err;
  }
}

function toProto(b: Block) {
  return create(BlockSchema, b);
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    log("error", "typescript-vm failed", { error: String(err) });
    process.exit(exitFailure);
  },
);
