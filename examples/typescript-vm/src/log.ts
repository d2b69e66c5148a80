// JSON log lines on stderr, one object per line, with the keys of Go's
// log/slog ("time", "level", "msg"): the host reads the level and the
// message and keeps every other field as an attribute (docs/VM-AUTHORS.md).

export type Level = "debug" | "info" | "warn" | "error";

export type Fields = Record<string, unknown>;

export function log(level: Level, msg: string, fields: Fields = {}): void {
  const line = JSON.stringify(
    { time: new Date().toISOString(), level, msg, ...fields },
    (_key, value: unknown) => (typeof value === "bigint" ? value.toString() : value),
  );
  process.stderr.write(line + "\n");
}
