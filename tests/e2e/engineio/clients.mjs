// Runs N official socket.io clients against a URL; each sends M "echo" messages and waits for
// every ack, surviving reconnects. Prints one JSON summary on stdout (see `summary` below).
//
//   node clients.mjs --url http://127.0.0.1:8080 [--clients 50] [--messages 20]
//        [--transports polling|websocket|default] [--alt-port PORT] [--interval-ms 0]
//        [--ack-timeout-ms 3000] [--deadline-s 60] [--ready-file PATH]
//
// --alt-port: every polling request and the websocket upgrade alternate between the URL's port
// and PORT (two proxy replicas), which only works when both route a session the same way.
// --ready-file: written once every client has been told its backend's name (a test then knows
// that all sessions are pinned before it kills a backend).
// Backends are `limpet whoami`: it emits "whoami" {name, sid} on connect and acks "echo" with
// {name, data}.
import { writeFileSync } from "node:fs";
import { io } from "socket.io-client";
import { NodeXHR, NodeWebSocket } from "engine.io-client";

function parseArgs(argv) {
  const opts = {
    url: null, clients: 50, messages: 20, transports: "default", altPort: null,
    intervalMs: 0, ackTimeoutMs: 3000, deadlineS: 60, readyFile: null,
  };
  for (let i = 2; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    switch (flag) {
      case "--url": opts.url = value; break;
      case "--clients": opts.clients = Number(value); break;
      case "--messages": opts.messages = Number(value); break;
      case "--transports": opts.transports = value; break;
      case "--alt-port": opts.altPort = Number(value); break;
      case "--interval-ms": opts.intervalMs = Number(value); break;
      case "--ack-timeout-ms": opts.ackTimeoutMs = Number(value); break;
      case "--deadline-s": opts.deadlineS = Number(value); break;
      case "--ready-file": opts.readyFile = value; break;
      default: throw new Error(`unknown flag ${flag}`);
    }
  }
  if (!opts.url) throw new Error("--url is required");
  return opts;
}

// Transports whose every request alternates between two ports: a session handshaken through one
// proxy replica continues through the other.
function alternating(Base, altPort) {
  return class extends Base {
    _port() {
      this._turn = (this._turn || 0) + 1;
      const port = this._turn % 2 === 0 ? altPort : this.opts.port;
      return `:${port}`;
    }
  };
}

function transportOption(opts) {
  let names;
  if (opts.transports === "polling") names = ["polling"];
  else if (opts.transports === "websocket") names = ["websocket"];
  else if (opts.transports === "default") names = ["polling", "websocket"];
  else throw new Error(`--transports ${opts.transports}: expected polling, websocket or default`);
  if (!opts.altPort) return names;
  // the websocket is opened once: give it the other port than the handshake's
  const AltWS = class extends NodeWebSocket { _port() { return `:${opts.altPort}`; } };
  return names.map((n) => (n === "polling" ? alternating(NodeXHR, opts.altPort) : AltWS));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function isSessionUnknown(err) {
  const ctx = err && err.context;
  const text = ctx && typeof ctx.responseText === "string" ? ctx.responseText : "";
  return text.includes("Session ID unknown") || String(err && err.message).includes("Session ID unknown");
}

let named = 0;
function onNamed(opts) {
  named += 1;
  if (named === opts.clients && opts.readyFile) writeFileSync(opts.readyFile, "ready\n");
}

async function runClient(index, opts, deadline) {
  const stats = {
    client: index, backends: [], connect_errors: 0, session_unknown: 0, http_400: 0,
    transport_errors: 0, reconnects: 0, disconnects: 0, ok: 0, failed_acks: 0,
    upgraded: false, finished: false,
  };
  const seen = (name) => { if (name && !stats.backends.includes(name)) stats.backends.push(name); };
  const socket = io(opts.url, {
    transports: transportOption(opts),
    reconnectionDelay: 200,
    reconnectionDelayMax: 1000,
    timeout: 5000,
    forceNew: true,
  });
  const manager = socket.io;
  const countError = (err) => {
    stats.transport_errors += 1;
    if (isSessionUnknown(err)) stats.session_unknown += 1;
    if (err && (err.description === 400 || String(err.message).includes("400"))) stats.http_400 += 1;
  };
  manager.on("error", countError);
  manager.on("reconnect", () => { stats.reconnects += 1; });
  socket.on("connect_error", (err) => {
    stats.connect_errors += 1;
    if (isSessionUnknown(err)) stats.session_unknown += 1;
  });
  socket.on("disconnect", (reason) => {
    if (reason !== "io client disconnect") stats.disconnects += 1;
  });
  let first = true;
  socket.on("whoami", (data) => {
    seen(data && data.name);
    if (first) { first = false; onNamed(opts); }
  });
  manager.on("open", () => {
    manager.engine.on("upgrade", () => { stats.upgraded = true; });
    manager.engine.on("upgradeError", countError);
  });

  let i = 0;
  while (i < opts.messages && Date.now() < deadline) {
    if (!socket.connected) { await sleep(20); continue; }
    try {
      const reply = await socket.timeout(opts.ackTimeoutMs).emitWithAck("echo", { client: index, i });
      if (reply && reply.data && reply.data.i === i) {
        seen(reply.name);
        stats.ok += 1;
        i += 1;
      } else {
        stats.failed_acks += 1;
      }
    } catch {
      stats.failed_acks += 1;
    }
    if (opts.intervalMs) await sleep(opts.intervalMs);
  }
  stats.finished = i >= opts.messages;
  socket.disconnect();
  return stats;
}

async function main() {
  const opts = parseArgs(process.argv);
  const deadline = Date.now() + opts.deadlineS * 1000;
  const results = await Promise.all(
    Array.from({ length: opts.clients }, (_, k) => runClient(k, opts, deadline)),
  );
  const sum = (key) => results.reduce((n, r) => n + r[key], 0);
  const summary = {
    clients: results.length,
    messages_per_client: opts.messages,
    transports: opts.transports,
    finished: results.filter((r) => r.finished).length,
    ok: sum("ok"),
    connect_errors: sum("connect_errors"),
    session_unknown: sum("session_unknown"),
    http_400: sum("http_400"),
    transport_errors: sum("transport_errors"),
    reconnects: sum("reconnects"),
    disconnects: sum("disconnects"),
    failed_acks: sum("failed_acks"),
    upgraded: results.filter((r) => r.upgraded).length,
    multi_backend_clients: results.filter((r) => r.backends.length > 1).length,
    backends: [...new Set(results.flatMap((r) => r.backends))].sort(),
    per_client: results,
  };
  process.stdout.write(JSON.stringify(summary) + "\n");
  // engine.io-client may keep a timer: do not wait for it
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`clients.mjs: ${err && err.message ? err.message : err}\n`);
  process.exit(2);
});
