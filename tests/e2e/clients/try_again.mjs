// One websocket-only client against a hub that refuses it for now (close 1013, "try again
// later"). argv: URL CHANNEL KIND DEADLINE_MS; KIND: "limpet" (limpet-client) or "plain" (the
// official socket.io client alone, connect timeout 20 s). Prints one JSON line:
//   {"event": "subscribed", "ms": T, "errors": [...]}  or  {"event": "deadline", "errors": [...]}
import { io } from "socket.io-client";
import { LimpetClient } from "../../../clients/js/limpet-client.js";

const [url, channel, kind, deadline] = process.argv.slice(2);
const started = Date.now();
const errors = [];
const done = (event) => {
  process.stdout.write(JSON.stringify({ event, ms: Date.now() - started, errors }) + "\n");
  process.exit(0);
};
setTimeout(() => done("deadline"), Number(deadline));

if (kind === "limpet") {
  const client = new LimpetClient(url, { transports: ["websocket"] });
  client.on("connect_error", (e) => errors.push(e.message));
  const sub = client.subscribe(channel, { onMessage: () => {} });
  sub.ready.then(() => done("subscribed"));
} else {
  const socket = io(url, { transports: ["websocket"], forceNew: true, timeout: 20000 });
  socket.on("connect_error", (e) => errors.push(String(e && e.message)));
  socket.on("connect", () => socket.emit("subscribe", { channel }, () => done("subscribed")));
}
