// What a remote VM needs beyond a launched one (docs/VM-AUTHORS.md,
// "Remote VM"): the engine over TLS, trusting the one certificate whose
// SHA-256 it was given and checking it before the token is sent; a TLS
// certificate of its own, made at start with the openssl command; the
// addresses its orchestrator gives it.

import { execFileSync } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { isIP } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Duplex } from "node:stream";
import * as tls from "node:tls";

export const engineCertKey = "VMRE_RUNTIME_ENGINE_CERT_SHA256";
export const enginePingKey = "VMRE_RUNTIME_ENGINE_PING";
export const listenAddrKey = "VMRE_VM_LISTEN_ADDR";
export const advertiseAddrKey = "VMRE_VM_ADVERTISE_ADDR";
export const plaintextKey = "VMRE_VM_PLAINTEXT";

/** A variable that is not valid: the VM exits 2. */
export class UsageError extends Error {}

/** The fingerprint as 64 lowercase hex digits; either case and openssl's AB:CD:... are taken. */
export function parseFingerprint(value: string): string {
  let fp = value.trim().toLowerCase();
  if ((fp.match(/:/g) ?? []).length === 31) {
    fp = fp.replaceAll(":", "");
  }
  if (!/^[0-9a-f]{64}$/.test(fp)) {
    throw new UsageError(`${engineCertKey}=${JSON.stringify(value)} is not a SHA-256 fingerprint: want 64 hex digits, as \`vmre remote env NAME\` prints it`);
  }
  return fp;
}

const unitMs: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1000, m: 60000, h: 3600000 };

/** A Go duration such as 5s, 500ms or 1m30s, in milliseconds. */
export function parseDuration(value: string): number {
  const parts = [...value.matchAll(/([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)/g)];
  const ms = parts.reduce((sum, [, n, u]) => sum + Number(n) * unitMs[u], 0);
  if (value === "" || parts.map((p) => p[0]).join("") !== value || ms <= 0) {
    throw new UsageError(`${enginePingKey}=${JSON.stringify(value)} is not a positive duration such as 5s or 500ms`);
  }
  return ms;
}

/** [host, port] of a host:port, [v6]:port included. */
export function splitHostPort(addr: string, what: string): [string, number] {
  const m = /^(\[[^\]]*\]|[^:]*):([0-9]+)$/.exec(addr);
  if (!m || m[1] === "" || Number(m[2]) > 65535) {
    throw new UsageError(`${what}=${JSON.stringify(addr)} is not a host:port such as 10.0.0.2:9650`);
  }
  return [m[1].replace(/^\[|\]$/g, ""), Number(m[2])];
}

export function joinHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The address a remote VM announces: VMRE_VM_ADVERTISE_ADDR as a host:port,
 * or as a host with the listener's port, or the listener's own address
 * unless it is every interface's.
 */
export function advertisedAddr(advertised: string, listenHost: string, listenPort: number): string {
  if (advertised !== "") {
    return /^(\[[^\]]*\]|[^:]*):[0-9]+$/.test(advertised) ? advertised : joinHostPort(advertised.replace(/^\[|\]$/g, ""), listenPort);
  }
  if (listenHost === "0.0.0.0" || listenHost === "::") {
    throw new UsageError(`the VM listens on ${joinHostPort(listenHost, listenPort)}, every interface: set ${advertiseAddrKey} to the address the node reaches it at`);
  }
  return joinHostPort(listenHost, listenPort);
}

/** A certificate and key for host, made with the openssl command, and the certificate's DER. */
export function selfSigned(host: string): { key: string; cert: string; der: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), "typescript-vm-tls-")); // mode 0700
  try {
    const keyFile = join(dir, "key.pem");
    const certFile = join(dir, "cert.pem");
    const san = isIP(host) ? `IP:${host}` : `DNS:${host}`;
    try {
      execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", keyFile, "-out", certFile, "-days", "365", "-subj", "/CN=vmre", "-addext", `subjectAltName=${san}`], { stdio: ["ignore", "ignore", "pipe"] });
    } catch (err) {
      throw new UsageError(`openssl could not make the VM's certificate (a remote VM makes it with the openssl command): ${String(err)}`);
    }
    const cert = readFileSync(certFile, "utf8");
    return { key: readFileSync(keyFile, "utf8"), cert, der: new X509Certificate(cert).raw };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function sha256Hex(der: Buffer): string {
  return createHash("sha256").update(der).digest("hex");
}

/**
 * The connection of an HTTP/2 session to the engine: TLS trusting exactly
 * the certificate of fingerprint want. The session writes into a stream
 * that holds its bytes until the check has passed, so that nothing (the
 * token least of all) reaches another server.
 */
export function pinnedConnection(want: string): (authority: URL) => Duplex {
  return (authority) => {
    const host = authority.hostname.replace(/^\[|\]$/g, "");
    const socket = tls.connect({
      host,
      port: Number(authority.port || 443),
      servername: isIP(host) ? undefined : host,
      ALPNProtocols: ["h2"],
      minVersion: "TLSv1.2",
      rejectUnauthorized: false, // the fingerprint below is the whole of the trust
    });
    let checked = false;
    const held: Array<[Buffer, (err?: Error | null) => void]> = [];
    const conn = new Duplex({
      write(chunk: Buffer, _enc, done) {
        if (checked) {
          socket.write(chunk, done);
        } else {
          held.push([chunk, done]);
        }
      },
      read() {
        socket.resume();
      },
      final(done) {
        socket.end(done);
      },
      destroy(err, done) {
        socket.destroy(err ?? undefined);
        done(err);
      },
    });
    socket.on("data", (data: Buffer) => {
      if (!conn.push(data)) {
        socket.pause();
      }
    });
    socket.on("end", () => conn.push(null));
    socket.on("error", (err) => conn.destroy(err));
    socket.on("close", () => conn.destroy());
    socket.once("secureConnect", () => {
      const got = sha256Hex(socket.getPeerCertificate(true).raw);
      if (got !== want) {
        conn.destroy(new Error(`the engine at ${authority.host} is not the one ${engineCertKey} names: its certificate has SHA-256 ${got}, not ${want}`));
        return;
      }
      checked = true;
      for (const [chunk, done] of held.splice(0)) {
        socket.write(chunk, done);
      }
    });
    return conn;
  };
}
