#!/usr/bin/env python3
"""A vmre VM plugin in Python with no Connect or gRPC library at all.

The handshake is one HTTP POST (urllib); the VM's own RPCs, the example
chain of cmd/examplevm (vmre.example.v1.ChainService) and grpc.health.v1
Check, are Connect unary calls with JSON bodies over HTTP/1.1
(http.server). The contract it follows is docs/VM-AUTHORS.md.

    vmre run examples/http-vm/vm.py

Given VMRE_RUNTIME_ENGINE_CERT_SHA256 too (`vmre remote env NAME` prints
it), it is a remote VM (docs/VM-AUTHORS.md, "Remote VM"): it reaches the
engine over TLS, checking the certificate's fingerprint before it sends its
token; serves TLS itself with a certificate made at start by the openssl
command, announcing it; holds the lease stream, and exits 75 when the node
ends its session or is lost, for its orchestrator to start it again.
"""

import argparse
import base64
import binascii
import datetime
import gzip
import hashlib
import http.client
import http.server
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ENGINE_ADDRESS_KEY = "VMRE_RUNTIME_ENGINE_ADDR"
ENGINE_TOKEN_KEY = "VMRE_RUNTIME_ENGINE_TOKEN"
# A remote VM's (docs/REMOTE.md).
ENGINE_CERT_KEY = "VMRE_RUNTIME_ENGINE_CERT_SHA256"
ENGINE_PING_KEY = "VMRE_RUNTIME_ENGINE_PING"
LISTEN_ADDR_KEY = "VMRE_VM_LISTEN_ADDR"
ADVERTISE_ADDR_KEY = "VMRE_VM_ADVERTISE_ADDR"
PLAINTEXT_KEY = "VMRE_VM_PLAINTEXT"

# The vmre protocol version this VM was written for.
PROTOCOL_VERSION = 1

# Exit codes.
EXIT_OK = 0
EXIT_FAILURE = 1  # the handshake failed (the host refused it or was unreachable)
EXIT_USAGE = 2  # bad flags, or started without the host's variables, or with bad ones
EXIT_RESTART = 75  # a remote VM whose node ended its session or was lost: start it again

NOT_PLUGIN = (
    "this program is a vmre VM plugin, meant to be started by a host (`vmre run PLUGIN`, "
    "or a node that embeds vmre), which sets {addr} and {token}. To run it by hand or in a "
    "debugger, start an engine with `vmre serve`, export the two lines it prints, and start "
    "this program again"
).format(addr=ENGINE_ADDRESS_KEY, token=ENGINE_TOKEN_KEY)

GENESIS_DATA = b"vmre examplevm genesis"
MAX_DATA_BYTES = 1 << 20
MAX_BODY_BYTES = 2 * MAX_DATA_BYTES  # base64 and JSON around the largest payload

CHAIN_SERVICE = "vmre.example.v1.ChainService"
HEALTH_SERVICE = "grpc.health.v1.Health"


def log(level, msg, **fields):
    """Writes one JSON log line on stderr with the keys of Go's log/slog."""
    record = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(), "level": level, "msg": msg}
    record.update(fields)
    sys.stderr.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stderr.flush()


class ConnectError(Exception):
    """A Connect error: a code name, an HTTP status and a message."""

    STATUS = {
        "invalid_argument": 400,
        "not_found": 404,
        "unimplemented": 404,
        "resource_exhausted": 429,
        "unavailable": 503,
        "internal": 500,
        "unknown": 500,
    }

    def __init__(self, code, message, details=()):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = list(details)
        self.http_status = self.STATUS.get(code, 500)


# The chain: the same as cmd/examplevm's, so that the genesis block has the
# same id in both.


def block_id(parent_id, height, data):
    """The hex SHA-256 of the parent id, the height as 8 big-endian bytes, and the data."""
    h = hashlib.sha256()
    h.update(parent_id.encode())
    h.update(height.to_bytes(8, "big"))
    h.update(data)
    return h.hexdigest()


class Chain:
    def __init__(self):
        self._lock = threading.Lock()
        self._blocks = [self._new_block(None, GENESIS_DATA)]

    @staticmethod
    def _new_block(parent, data):
        height = parent["height"] + 1 if parent else 0
        parent_id = parent["id"] if parent else ""
        return {
            "height": height,
            "id": block_id(parent_id, height, data),
            "parent_id": parent_id,
            "data": data,
            "timestamp_ms": int(time.time() * 1000),
        }

    def build(self, data):
        if len(data) > MAX_DATA_BYTES:
            raise ConnectError(
                "invalid_argument",
                "block data too large: %d bytes, the limit is %d (1 MiB)" % (len(data), MAX_DATA_BYTES),
            )
        with self._lock:
            block = self._new_block(self._blocks[-1], data)
            self._blocks.append(block)
            return block

    def get(self, height):
        with self._lock:
            last = len(self._blocks) - 1
            if height > last:
                raise ConnectError(
                    "not_found",
                    "block not found at height %d: the last accepted height is %d" % (height, last),
                )
            return self._blocks[height]

    def last_accepted(self):
        with self._lock:
            return self._blocks[-1]


# Protobuf's JSON mapping: 64-bit integers are strings, bytes are base64,
# field names are lowerCamelCase (readers accept the proto names too).


def block_json(b):
    return {
        "height": str(b["height"]),
        "id": b["id"],
        "parentId": b["parent_id"],
        "data": base64.b64encode(b["data"]).decode(),
        "timestampMs": str(b["timestamp_ms"]),
    }


def field(req, camel, proto, default):
    if camel in req:
        return req[camel]
    return req.get(proto, default)


def json_bytes(value):
    if not isinstance(value, str):
        raise ConnectError("invalid_argument", "bytes field: want a base64 string")
    value = value.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except binascii.Error as e:
        raise ConnectError("invalid_argument", "bytes field: %s" % e) from None


def json_uint64(value):
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 64:
        raise ConnectError("invalid_argument", "uint64 field: want a number or a decimal string")
    return value


class VM:
    """The VM's RPCs, by path: each takes the request's JSON object and returns the response's."""

    def __init__(self, chain):
        self.chain = chain
        self.serving = False
        self.routes = {
            "/%s/BuildBlock" % CHAIN_SERVICE: self.build_block,
            "/%s/GetBlock" % CHAIN_SERVICE: self.get_block,
            "/%s/LastAccepted" % CHAIN_SERVICE: self.last_accepted,
            "/%s/Check" % HEALTH_SERVICE: self.health_check,
        }

    def build_block(self, req):
        b = self.chain.build(json_bytes(field(req, "data", "data", "")))
        log("info", "built block", height=b["height"], id=b["id"], bytes=len(b["data"]))
        return {"block": block_json(b)}

    def get_block(self, req):
        return {"block": block_json(self.chain.get(json_uint64(field(req, "height", "height", 0))))}

    def last_accepted(self, req):
        return {"block": block_json(self.chain.last_accepted())}

    def health_check(self, req):
        service = field(req, "service", "service", "")
        if service not in ("", CHAIN_SERVICE):
            raise ConnectError("not_found", "unknown service %r" % service)
        return {"status": "SERVING" if self.serving else "NOT_SERVING"}


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves Connect unary calls with JSON bodies: POST /PACKAGE.SERVICE/METHOD."""

    protocol_version = "HTTP/1.1"  # keep-alive: one connection carries many calls
    vm = None  # set by serve()

    def do_GET(self):
        # A Kubernetes probe (httpGet over HTTPS) of the health check: 200
        # while serving, 503 otherwise. Every other GET is not a method.
        if self.path.split("?")[0] != "/%s/Check" % HEALTH_SERVICE:
            self.reply(404, {"code": "unimplemented", "message": "%s is not a method of this VM" % self.path})
            return
        status = "SERVING" if self.vm.serving else "NOT_SERVING"
        body = (status + "\n").encode()
        self.send_response(200 if self.vm.serving else 503)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        try:
            method = self.vm.routes.get(self.path)
            if method is None:
                raise ConnectError("unimplemented", "%s is not a method of this VM" % self.path)
            content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if content_type != "application/json":
                # Connect's answer to a codec the server lacks: 415, and what it accepts.
                self.send_response(415)
                self.send_header("Accept-Post", "application/json")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.reply(200, method(self.read_json()))
        except ConnectError as e:
            self.reply(e.http_status, {"code": e.code, "message": e.message})

    def read_json(self):
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise ConnectError("unimplemented", "chunked request bodies are not supported: send Content-Length")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise ConnectError("resource_exhausted", "request body of %d bytes is over %d" % (length, MAX_BODY_BYTES))
        body = self.rfile.read(length)
        encoding = self.headers.get("Content-Encoding", "identity").lower()
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding != "identity":
            raise ConnectError("unimplemented", "unsupported Content-Encoding %r; send gzip or identity" % encoding)
        try:
            req = json.loads(body or b"{}")
        except ValueError as e:
            raise ConnectError("invalid_argument", "the body is not JSON: %s" % e) from None
        if not isinstance(req, dict):
            raise ConnectError("invalid_argument", "the body is not a JSON object")
        return req

    def reply(self, status, obj):
        body = json.dumps(obj, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        log("debug", "http", peer=self.address_string(), request=format % args)


class UsageError(Exception):
    """A variable that is not valid: the VM exits 2."""


def connect_error(status, body):
    """The ConnectError of a non-200 answer's body."""
    try:
        err = json.loads(body)
    except ValueError:
        err = {}
    return ConnectError(err.get("code", "unknown"), err.get("message", "HTTP %d" % status), err.get("details", ()))


# A remote VM: the engine over TLS, pinned to a fingerprint; TLS of its own.


def parse_fingerprint(value):
    """The fingerprint of VMRE_RUNTIME_ENGINE_CERT_SHA256, as 64 lowercase hex digits.

    Takes either case, and openssl's AB:CD:... form; raises UsageError otherwise.
    """
    fp = value.strip().lower()
    if fp.count(":") == 31:
        fp = fp.replace(":", "")
    if not re.fullmatch(r"[0-9a-f]{64}", fp):
        raise UsageError(
            "%s=%r is not a SHA-256 fingerprint: want 64 hex digits, as `vmre remote env NAME` prints it" % (ENGINE_CERT_KEY, value)
        )
    return fp


DURATION = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_duration(value):
    """A Go duration such as 5s, 500ms or 1m30s, in seconds."""
    if not value or not re.fullmatch(r"(%s)+" % DURATION.pattern, value):
        raise UsageError("%s=%r is not a duration such as 5s or 500ms" % (ENGINE_PING_KEY, value))
    seconds = sum(float(n) * UNIT_SECONDS[u] for n, u in DURATION.findall(value))
    if seconds <= 0:
        raise UsageError("%s=%r: want a positive duration" % (ENGINE_PING_KEY, value))
    return seconds


def split_host_port(addr, what):
    """("host", port) of a host:port, [v6]:port included; raises UsageError."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536 or not host:
        raise UsageError("%s=%r is not a host:port such as 10.0.0.2:9650" % (what, addr))
    return host.strip("[]"), int(port)


def join_host_port(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def self_signed(host):
    """Makes a certificate and key for host with the openssl command.

    Returns (a server SSLContext, the certificate's DER). The key never
    leaves a directory of the process's own, removed once loaded.
    """
    if shutil.which("openssl") is None:
        raise UsageError("the openssl command is not on PATH: a remote VM makes its certificate with it (apt-get install -y openssl)")
    try:
        san = "IP:" + str(ipaddress.ip_address(host))
    except ValueError:
        san = "DNS:" + host
    workdir = tempfile.mkdtemp(prefix="http-vm-tls-")  # mode 0700
    try:
        key, cert = os.path.join(workdir, "key.pem"), os.path.join(workdir, "cert.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", cert, "-days", "365", "-subj", "/CN=vmre", "-addext", "subjectAltName=" + san],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        with open(cert) as f:
            der = ssl.PEM_cert_to_DER_cert(f.read())
        return ctx, der
    except subprocess.CalledProcessError as e:
        raise UsageError("openssl could not make the VM's certificate: %s" % e.stderr.decode(errors="replace").strip()) from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def advertised_addr(advertised, listen_host, listen_port):
    """The address a remote VM announces: VMRE_VM_ADVERTISE_ADDR as a host:port,
    or as a host with the listener's port, or the listener's own address
    unless it is every interface's; raises UsageError then."""
    if advertised:
        if re.search(r"^(\[[^]]*\]|[^:]*):[0-9]+$", advertised):
            return advertised  # host:port
        return join_host_port(advertised.strip("[]"), listen_port)  # a host
    if ipaddress.ip_address(listen_host).is_unspecified:
        raise UsageError("the VM listens on %s, every interface: set %s to the address the node reaches it at"
                         % (join_host_port(listen_host, listen_port), ADVERTISE_ADDR_KEY))
    return join_host_port(listen_host, listen_port)


class TLSServer(http.server.ThreadingHTTPServer):
    """A ThreadingHTTPServer whose connections speak TLS.

    The TLS handshake of a connection runs on its own thread, not in the
    accepting loop, so that a slow or silent peer holds up no one else.
    """

    daemon_threads = True

    def __init__(self, address, handler, context):
        self.context = context
        super().__init__(address, handler)

    def get_request(self):
        sock, addr = super().get_request()
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def finish_request(self, request, client_address):
        try:
            request.settimeout(10)
            request.do_handshake()
            request.settimeout(None)
        except (ssl.SSLError, OSError):
            return  # plain text, or a client that gave up: nothing to serve
        super().finish_request(request, client_address)


class Engine:
    """The engine's RuntimeService over HTTP/1.1: plain, or TLS pinned to a fingerprint."""

    def __init__(self, addr, token, cert_sha256=None):
        self.addr, self.token, self.cert_sha256 = addr, token, cert_sha256

    def connect(self, timeout):
        """A new connection to the engine; for TLS, checked before anything is sent on it."""
        host, port = split_host_port(self.addr, ENGINE_ADDRESS_KEY)
        if self.cert_sha256 is None:
            return http.client.HTTPConnection(host, port, timeout=timeout)
        # The trust is the fingerprint alone: no CA, no host name.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
        conn.connect()
        got = hashlib.sha256(conn.sock.getpeercert(binary_form=True)).hexdigest()
        if got != self.cert_sha256:
            conn.close()
            raise ConnectError(
                "unavailable",
                "the engine at %s is not the one %s names: its certificate has SHA-256 %s, not %s"
                % (self.addr, ENGINE_CERT_KEY, got, self.cert_sha256),
            )
        return conn

    def headers(self, content_type):
        return {"Content-Type": content_type, "Authorization": "Bearer " + self.token}


def handshake(engine_addr, token, version, addr, engine=None, cert_der=None):
    """Calls vmre.runtime.v1.RuntimeService/Initialize: one POST with the token.

    Returns the host's answer, or raises ConnectError with the engine's code.
    A remote VM's call goes to engine, over TLS, and announces its
    certificate (cert_der).
    """
    if engine is not None:
        body = {"protocolVersion": version, "addr": addr}
        if cert_der is not None:
            body["certSha256"] = hashlib.sha256(cert_der).hexdigest()
            body["certificate"] = base64.b64encode(cert_der).decode()
        try:
            conn = engine.connect(timeout=10)
            try:
                conn.request("POST", "/vmre.runtime.v1.RuntimeService/Initialize", body=json.dumps(body).encode(),
                             headers=engine.headers("application/json"))
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as e:
            raise ConnectError("unavailable", "the engine at %s: %s" % (engine_addr, e)) from e
        if resp.status != 200:
            raise connect_error(resp.status, data)
        return json.loads(data)
    req = urllib.request.Request(
        "http://%s/vmre.runtime.v1.RuntimeService/Initialize" % engine_addr,
        data=json.dumps({"protocolVersion": version, "addr": addr}).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + token},
        method="POST",
    )
    # No proxies: the engine is on loopback, whatever http_proxy says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=5) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as e:
        try:
            err = json.load(e)
        except ValueError:
            err = {}
        raise ConnectError(err.get("code", "unknown"), err.get("message", "HTTP %d" % e.code), err.get("details", ())) from e
    except (urllib.error.URLError, OSError) as e:
        raise ConnectError("unavailable", "the engine at %s: %s" % (engine_addr, e)) from e


def hold_lease(engine, ping, on_end):
    """Holds the Lease stream (Connect, enveloped JSON) until it ends.

    The engine sends a message at least every ping; silence for twice as
    long means the link is cut. Calls on_end(reason, exit code, error) once:
    the node's operator stopped the VM (0), the node ended the session for
    it to start again or was lost (75), or the node refused the lease (1).
    """
    try:
        conn = engine.connect(timeout=2 * ping)
        conn.request("POST", "/vmre.runtime.v1.RuntimeService/Lease", body=b"\x00\x00\x00\x00\x02{}",
                     headers=engine.headers("application/connect+json"))
        resp = conn.getresponse()
        if resp.status == 404:
            on_end(None, None, None)  # an engine without leases: serve until a signal
            return
        if resp.status != 200:
            err = connect_error(resp.status, resp.read())
            on_end("the node refused the lease", EXIT_FAILURE, err)
            return
        while True:
            head = resp.read(5)
            if len(head) < 5:
                on_end("lost the lease to the node: the stream broke", EXIT_RESTART, None)
                return
            flags, size = struct.unpack(">BI", head)
            msg = resp.read(size)
            if flags & 0x02 == 0:
                continue  # a LeaseResponse: the lease holds
            end = json.loads(msg or b"{}")
            err = end.get("error")
            if err is None:
                on_end("the node's operator stopped this VM", EXIT_OK, None)
            elif err.get("code") == "aborted":
                on_end("the node ended this VM's session, to be started again", EXIT_RESTART, ConnectError("aborted", err.get("message", "")))
            else:
                on_end("the node refused the lease", EXIT_FAILURE, ConnectError(err.get("code", "unknown"), err.get("message", "")))
            return
    except ConnectError as e:
        on_end("lost the lease to the node", EXIT_RESTART, e)
    except (OSError, http.client.HTTPException, ValueError) as e:
        # socket.timeout (TimeoutError) included: nothing for twice the ping.
        on_end("lost the lease to the node: the link broke or the node is gone", EXIT_RESTART, ConnectError("unavailable", str(e) or type(e).__name__))


def main():
    parser = argparse.ArgumentParser(description="A vmre VM plugin in Python, meant to be started by a host: vmre run %(prog)s")
    parser.add_argument(
        "--protocol-version",
        type=int,
        default=PROTOCOL_VERSION,
        metavar="N",
        help="announce protocol version N instead of %d (to see the host refuse a VM of another version)"
        % PROTOCOL_VERSION,
    )
    args = parser.parse_args()  # exits 2 on bad flags

    # Catch SIGTERM and SIGINT from the start: the host may stop the VM at
    # any time, even during the handshake, and expects exit 0 then.
    stop = threading.Event()
    stop_reason = []

    def on_signal(signum, _frame):
        stop_reason.append("received " + signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    engine_addr = os.environ.get(ENGINE_ADDRESS_KEY, "")
    token = os.environ.get(ENGINE_TOKEN_KEY, "")
    missing = [k for k, v in ((ENGINE_ADDRESS_KEY, engine_addr), (ENGINE_TOKEN_KEY, token)) if not v]
    if missing:
        sys.stderr.write("%s (%s not set)\n" % (NOT_PLUGIN, " and ".join(missing)))
        return EXIT_USAGE

    started = time.monotonic()
    chain = Chain()
    remote = bool(os.environ.get(ENGINE_CERT_KEY))
    log(
        "info",
        "http-vm starting",
        protocol_version=args.protocol_version,
        python=sys.version.split()[0],
        genesis_id=chain.last_accepted()["id"],
        remote=remote,
    )

    # 1. Listen and serve: on a free loopback port, or for a remote VM
    # where its orchestrator says, over TLS.
    vm = VM(chain)
    handler = type("VMHandler", (Handler,), {"vm": vm})
    engine, cert_der, server = None, None, None
    try:
        if remote:
            engine = Engine(engine_addr, token, parse_fingerprint(os.environ[ENGINE_CERT_KEY]))
            ping = parse_duration(os.environ.get(ENGINE_PING_KEY) or "5s")
            host, port = split_host_port(os.environ.get(LISTEN_ADDR_KEY) or "0.0.0.0:0", LISTEN_ADDR_KEY)
            tls = os.environ.get(PLAINTEXT_KEY) != "1"
            server = TLSServer((host, port), handler, None) if tls else http.server.ThreadingHTTPServer((host, port), handler)
            server.daemon_threads = True
            addr = advertised_addr(os.environ.get(ADVERTISE_ADDR_KEY, ""), *server.server_address[:2])
            if tls:
                server.context, cert_der = self_signed(split_host_port(addr, ADVERTISE_ADDR_KEY)[0])
        else:
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
            server.daemon_threads = True
            addr = "127.0.0.1:%d" % server.server_address[1]
    except UsageError as e:
        log("error", "http-vm cannot run as configured", error=str(e))
        if server is not None:
            server.server_close()
        return EXIT_USAGE
    except OSError as e:
        log("error", "http-vm cannot listen", error=str(e))
        return EXIT_FAILURE
    # A short poll interval makes shutdown() quick.
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="serve")
    serving.start()
    vm.serving = True

    # 2. The handshake: tell the host where we serve, with its token.
    code = EXIT_OK
    try:
        host = handshake(engine_addr, token, args.protocol_version, addr, engine, cert_der)
        log("info", "handshake succeeded", addr=addr, host=host.get("hostName"), protocol_version=host.get("protocolVersion"),
            tls=cert_der is not None)
        if remote:
            # 3. Hold the lease; serve until it ends or a signal comes.
            def on_end(why, exit_code, err):
                if why is None:
                    log("warn", "the node offers no lease; serving until stopped by a signal")
                    return
                fields = {"reason": why}
                if err is not None:
                    fields.update(code=err.code, error=err.message)
                log("warn" if exit_code else "info", "the lease ended", **fields)
                lease_exit.append(exit_code)  # first: read once stop is set
                stop_reason.append(why)
                stop.set()

            lease_exit = []
            threading.Thread(target=hold_lease, args=(engine, ping, on_end), name="lease", daemon=True).start()
        # 3. Serve until SIGTERM (or, remote, the lease's end). Python runs
        # a signal's handler on the main thread, but the kernel may deliver
        # the signal to another (it does under a tracer such as strace), and
        # a wait without a timeout is then never interrupted to run it: wake
        # up now and then.
        while not stop.wait(0.25):
            pass
        reason = stop_reason[0]
        if remote and lease_exit and not reason.startswith("received "):
            code = lease_exit[0]  # the lease ended first: its exit code
    except ConnectError as e:
        # The host refused the handshake (or could not be reached). It
        # stops a VM it refused at once, so SIGTERM may already be here.
        reason, code = "the handshake failed", EXIT_FAILURE
        fields = {"code": e.code, "error": e.message}
        for d in e.details:
            # "value" is the binary message in base64; connect-go adds
            # "debug", the same message in JSON.
            if d.get("type") == "vmre.runtime.v1.ProtocolVersionMismatch" and "debug" in d:
                fields["mismatch"] = d["debug"]
                fields["hint"] = "run this VM with --protocol-version %d, or a host that speaks %d" % (
                    d["debug"].get("hostProtocolVersion", 0),
                    args.protocol_version,
                )
        log("error", "handshake failed", **fields)

    # 4. Shut down: stop accepting calls; those in flight finish on their threads.
    vm.serving = False
    log("info", "shutting down", reason=reason)
    server.shutdown()
    server.server_close()
    serving.join()
    log(
        "info" if code == EXIT_OK else "error",
        "http-vm stopped",
        last_height=chain.last_accepted()["height"],
        uptime_ms=int((time.monotonic() - started) * 1000),
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
