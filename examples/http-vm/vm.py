#!/usr/bin/env python3
"""A vmre VM plugin in Python with no Connect or gRPC library at all.

The handshake is one HTTP POST (urllib); the VM's own RPCs, the example
chain of cmd/examplevm (vmre.example.v1.ChainService) and grpc.health.v1
Check, are Connect unary calls with JSON bodies over HTTP/1.1
(http.server). The contract it follows is docs/VM-AUTHORS.md.

    vmre run examples/http-vm/vm.py
"""

import argparse
import base64
import binascii
import datetime
import gzip
import hashlib
import http.server
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request

ENGINE_ADDRESS_KEY = "VMRE_RUNTIME_ENGINE_ADDR"
ENGINE_TOKEN_KEY = "VMRE_RUNTIME_ENGINE_TOKEN"

# The vmre protocol version this VM was written for.
PROTOCOL_VERSION = 1

# Exit codes.
EXIT_OK = 0
EXIT_FAILURE = 1  # the handshake failed (the host refused it or was unreachable)
EXIT_USAGE = 2  # bad flags, or started without the host's variables

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


def handshake(engine_addr, token, version, addr):
    """Calls vmre.runtime.v1.RuntimeService/Initialize: one POST with the token.

    Returns the host's answer, or raises ConnectError with the engine's code.
    """
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
    log(
        "info",
        "http-vm starting",
        protocol_version=args.protocol_version,
        python=sys.version.split()[0],
        genesis_id=chain.last_accepted()["id"],
    )

    # 1. Listen on a free loopback port and serve.
    vm = VM(chain)
    handler = type("VMHandler", (Handler,), {"vm": vm})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    # A short poll interval makes shutdown() quick.
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="serve")
    serving.start()
    addr = "127.0.0.1:%d" % server.server_address[1]
    vm.serving = True

    # 2. The handshake: tell the host where we serve, with its token.
    code = EXIT_OK
    try:
        host = handshake(engine_addr, token, args.protocol_version, addr)
        log("info", "handshake succeeded", addr=addr, host=host.get("hostName"), protocol_version=host.get("protocolVersion"))
        # 3. Serve until SIGTERM. Python runs a signal's handler on the main
        # thread, but the kernel may deliver the signal to another (it does
        # under a tracer such as strace), and a wait without a timeout is
        # then never interrupted to run it: wake up now and then.
        while not stop.wait(0.25):
            pass
        reason = stop_reason[0]
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
