// ChannelState, the sans-IO core of limpet-client: table cases and a randomised property.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ChannelState, GapReason, newIdempotencyKey } from "../limpet-client.js";

const m = (offset, epoch = "e1") => ({ epoch, offset });

test("a first subscribe starts at the ack's position and delivers the next offsets once", () => {
  const s = new ChannelState("c");
  const { token, since } = s.subscribe();
  assert.equal(since, null);
  assert.deepEqual(s.onMessage(m(1)), { deliver: false, gap: null, resubscribe: false }, "nothing before the ack");
  assert.deepEqual(s.onAck(token, { epoch: "e1", offset: 4, recovered: false }), { stale: false, gap: null });
  assert.equal(s.onMessage(m(5)).deliver, true);
  assert.equal(s.onMessage(m(5)).deliver, false, "a duplicate is dropped");
  assert.equal(s.onMessage(m(3)).deliver, false, "an older offset is dropped");
  assert.equal(s.onMessage(m(6)).deliver, true);
  assert.deepEqual(s.position, { epoch: "e1", offset: 6 });
});

test("a resubscribe asks for since = the last delivered position; recovered keeps it", () => {
  const s = new ChannelState("c", { epoch: "e1", offset: 7 });
  const { token, since } = s.subscribe();
  assert.deepEqual(since, { epoch: "e1", offset: 7 });
  assert.equal(s.onAck(token, { epoch: "e1", offset: 10, recovered: true }).gap, null);
  assert.deepEqual(s.position, { epoch: "e1", offset: 7 }, "the missed messages follow the ack");
  assert.equal(s.onMessage(m(8)).deliver, true);
});

test("recovered: false is a gap: the history window, or a new epoch", () => {
  for (const [epoch, reason] of [["e1", GapReason.HISTORY_WINDOW], ["e2", GapReason.EPOCH_CHANGED]]) {
    const s = new ChannelState("c", { epoch: "e1", offset: 3 });
    const { token } = s.subscribe();
    const { gap } = s.onAck(token, { epoch, offset: 50, recovered: false });
    assert.deepEqual(gap, { channel: "c", from: { epoch: "e1", offset: 3 }, to: { epoch, offset: 50 }, reason });
    assert.equal(s.onMessage(m(51, epoch)).deliver, true);
  }
});

test("an ack to an older subscribe, or after a disconnect, is stale", () => {
  const s = new ChannelState("c");
  const first = s.subscribe();
  const second = s.subscribe();
  assert.equal(s.onAck(first.token, { epoch: "e1", offset: 1, recovered: false }).stale, true);
  s.disconnect();
  assert.equal(s.onAck(second.token, { epoch: "e1", offset: 1, recovered: false }).stale, true);
  assert.equal(s.onMessage(m(2)).deliver, false, "not live after a disconnect");
});

test("a hole makes it subscribe again from its position; a recovery event is a gap", () => {
  const s = new ChannelState("c", { epoch: "e1", offset: 1 });
  s.onAck(s.subscribe().token, { epoch: "e1", offset: 1, recovered: true });
  assert.deepEqual(s.onMessage(m(3)), { deliver: false, gap: null, resubscribe: true });
  const again = s.subscribe();
  assert.deepEqual(again.since, { epoch: "e1", offset: 1 });
  s.onAck(again.token, { epoch: "e1", offset: 3, recovered: true });
  const gap = s.onRecovery({ epoch: "e1", offset: 9 });
  assert.equal(gap.reason, GapReason.HISTORY_WINDOW);
  assert.deepEqual(s.position, { epoch: "e1", offset: 9 });
  assert.equal(s.onRecovery({ epoch: "e1", offset: 9 }), null, "nothing missed, no gap");
});

test("a message of another epoch without a recovery event is reported, then followed", () => {
  const s = new ChannelState("c");
  s.onAck(s.subscribe().token, { epoch: "e1", offset: 5, recovered: false });
  const r = s.onMessage(m(1, "e2"));
  assert.equal(r.deliver, true);
  assert.equal(r.gap.reason, GapReason.EPOCH_CHANGED);
  assert.deepEqual(s.position, { epoch: "e2", offset: 1 });
});

// Property: whatever the transport does (disconnects anywhere, a seam that repeats what was already
// delivered), a client that resubscribes with its position delivers 1..N exactly once, in order.
test("property: random disconnects and seam repeats deliver every offset once, in order", () => {
  let seed = 12345;
  const rand = (n) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  for (let run = 0; run < 300; run++) {
    const total = 1 + rand(60);
    const s = new ChannelState("c", { epoch: "e", offset: 0 });
    const delivered = [];
    let rounds = 0;
    while ((s.position?.offset ?? 0) < total && rounds++ < 500) {
      const { token, since } = s.subscribe();
      const from = since.offset;
      // the hub: the ack, the recovered messages, and a seam that may repeat a few of them
      s.onAck(token, { epoch: "e", offset: total, recovered: true });
      const stream = [];
      for (let o = from + 1; o <= total; o++) {
        stream.push(o);
        if (rand(5) === 0) stream.push(Math.max(1, o - rand(3)));
      }
      const cut = rand(stream.length + 1); // the connection drops after `cut` packets
      for (const o of stream.slice(0, cut)) if (s.onMessage(m(o, "e")).deliver) delivered.push(o);
      s.disconnect();
    }
    assert.deepEqual(delivered, Array.from({ length: total }, (_, i) => i + 1));
  }
});

test("idempotency keys are 32 hex characters and differ", () => {
  const a = newIdempotencyKey();
  assert.match(a, /^[0-9a-f]{32}$/);
  assert.notEqual(a, newIdempotencyKey());
});
