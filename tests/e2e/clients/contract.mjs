// limpet-client's promises and errors against one real hub. Usage: node contract.mjs URL
// Prints one JSON object: {name: result} for each check, where result is what was observed.
import { LimpetClient, LimpetError } from "../../../clients/js/limpet-client.js";

const [url] = process.argv.slice(2);
const seen = {};
const error = (e) => ({ name: e.name, code: e.code, message: e.message, isLimpetError: e instanceof LimpetError });
const run = async (name, fn) => {
  try { seen[name] = await fn(); } catch (e) { seen[name] = { threw: String(e) }; }
};
const stamp = Date.now().toString(36);
const client = new LimpetClient(url, { transports: ["websocket"] });

await run("refusedChannel", async () => {
  const errors = [];
  const sub = client.subscribe("bad channel!", { onError: (e) => errors.push(e.code) });
  return await sub.ready.then(() => "resolved", (e) => ({ ...error(e), onError: errors }));
});
await run("tooLarge", () => client.publish(`ok.${stamp}`, "x".repeat(100000)).then(() => "resolved", error));
await run("sameKeyTwice", async () => {
  const a = await client.publish(`ok.${stamp}`, 1, { idempotencyKey: "same-key" });
  const b = await client.publish(`ok.${stamp}`, 2, { idempotencyKey: "same-key" });
  return { first: a, second: b };
});
await run("otherEpoch", async () => {
  const gaps = [];
  const sub = client.subscribe(`ok.${stamp}`, { position: { epoch: "gone", offset: 5 }, onGap: (g) => gaps.push(g) });
  const position = await sub.ready;
  sub.unsubscribe();
  return { gaps, position };
});
await run("alreadySubscribed", async () => {
  const sub = client.subscribe(`dup.${stamp}`);
  await sub.ready;
  try { client.subscribe(`dup.${stamp}`); return "allowed"; } catch (e) { return error(e); } finally { sub.unsubscribe(); }
});
await run("unreachableTimesOut", async () => {
  const lost = new LimpetClient("http://127.0.0.1:9", { publishTimeout: 300, reconnectionDelay: 50 });
  try { return await lost.publish("ok.x", 1).then(() => "resolved", error); } finally { lost.close(); }
});
await run("closeRejectsPending", async () => {
  const lost = new LimpetClient("http://127.0.0.1:9", { reconnectionDelay: 50 });
  const pending = lost.publish("ok.x", 1).then(() => "resolved", error);
  lost.close();
  return await pending;
});
await run("throwingCallbackDoesNotStopDelivery", async () => {
  const got = [];
  const errors = [];
  client.on("error", (e) => errors.push(String(e)));
  const sub = client.subscribe(`cb.${stamp}`, { onMessage: (m) => { got.push(m.offset); if (m.offset === 1) throw new Error("boom"); } });
  await sub.ready;
  await sub.publish("a");
  await sub.publish("b");
  while (got.length < 2) await new Promise((r) => setTimeout(r, 10));
  sub.unsubscribe();
  return { got, errors };
});
client.close();
console.log(JSON.stringify(seen));
process.exit(0);
