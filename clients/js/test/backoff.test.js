// DecorrelatedBackoff and retryAfterMs: the distribution of reconnection delays and the hub's
// "try again later" (503 Retry-After, close 1013). The twin of tests/unit/client/test_backoff.py.
import { test } from "node:test";
import assert from "node:assert/strict";
import { DecorrelatedBackoff, retryAfterMs } from "../limpet-client.js";

// a seeded generator (mulberry32), so every run draws the same delays
const seeded = (seed) => () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

// the most delays that fall in one 100 ms window
const largestBucket = (delays) => {
  const buckets = new Map();
  for (const d of delays) buckets.set(Math.floor(d / 100), (buckets.get(Math.floor(d / 100)) ?? 0) + 1);
  return Math.max(...buckets.values());
};

test("each delay lies between min and three times the previous one, capped at max", () => {
  const b = new DecorrelatedBackoff({ min: 100, max: 5000, random: seeded(1) });
  let previous = 100;
  for (let i = 0; i < 500; i++) {
    const d = b.duration();
    assert.ok(d >= 100 && d <= Math.min(5000, previous * 3) + 1, `${d} after ${previous}`);
    previous = d;
  }
  assert.equal(b.attempts, 500);
});

test("a herd that failed at the same instant comes back spread out, not in one wave", () => {
  // 2 000 clients, third attempt each (a cap far enough not to gather them): the delays cover
  // the range, no 100 ms bucket holds more than a tenth of them (a fixed exponential backoff
  // puts them all in one)
  const random = seeded(7);
  const third = [];
  for (let i = 0; i < 2000; i++) {
    const b = new DecorrelatedBackoff({ min: 500, max: 60000, random });
    b.duration();
    b.duration();
    third.push(b.duration());
  }
  assert.ok(largestBucket(third) < 200, `largest bucket ${largestBucket(third)}`);
  assert.ok(Math.min(...third) < 1000 && Math.max(...third) > 8000, "the spread covers the range");
  const mean = third.reduce((a, b) => a + b, 0) / third.length;
  assert.ok(mean > 2000 && mean < 4500, `mean ${mean}`);
});

test("twin: without jitter the same herd comes back in one wave", () => {
  // exponential backoff without randomization (socket.io's with randomizationFactor 0)
  const third = Array.from({ length: 2000 }, () => 500 * 2 ** 2);
  assert.equal(largestBucket(third), 2000);
});

test("a Retry-After is honoured: the next delay is at least it, at most half as long again", () => {
  const b = new DecorrelatedBackoff({ min: 100, max: 1000, random: seeded(3) });
  for (let i = 0; i < 200; i++) {
    b.retryAfter(3000);
    const d = b.duration();
    assert.ok(d >= 3000 && d <= 4500, `${d}`);
  }
  b.reset();
  assert.ok(b.duration() <= 300, "once served, the floor is gone");
});

test("reset returns to the first range", () => {
  const b = new DecorrelatedBackoff({ min: 200, max: 10000, random: () => 0.999 });
  for (let i = 0; i < 10; i++) b.duration();
  assert.ok(b.duration() > 5000);
  b.reset();
  assert.equal(b.attempts, 0);
  assert.ok(b.duration() <= 600);
});

test("retryAfterMs reads a 503's Retry-After and a close 1013's reason", () => {
  const xhr = (value) => ({ getResponseHeader: (name) => (name === "Retry-After" ? value : null) });
  assert.equal(retryAfterMs({ context: xhr("2") }), 2000);
  assert.equal(retryAfterMs({ context: xhr("soon") }), 0);
  assert.equal(retryAfterMs({ context: xhr(null) }), 0);
  assert.equal(retryAfterMs({ context: { code: 1013, reason: "try again later: retry after 4 s" } }), 4000);
  assert.equal(retryAfterMs({ context: { code: 1013, reason: "" } }), 1000, "1013 alone: a second");
  assert.equal(retryAfterMs({ context: { code: 1006 } }), 0);
  assert.equal(retryAfterMs(new Error("timeout")), 0);
  assert.equal(retryAfterMs(undefined), 0);
});
