// docs/clients.md's "Persisting a position across page reloads", in real Chromium: a page on the
// hub subscribes with limpet-client and saves its position in localStorage; the driver publishes
// over HTTP before, while the page is away, and after it is back. MODE "saved" resumes from the saved position (the
// recipe); "fresh" subscribes without it (the twin).
// Usage: node reload.mjs HUB_URL CHANNEL MODE  -> prints a JSON summary on stdout.
import { chromium } from "playwright-core";

const [hub, channel, mode] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const result = { before: [], after: [], gaps: [], errors: [] };

const publish = async (n) => {
  const r = await fetch(`${hub}/api/channels/${channel}/messages`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ data: { n } }),
  });
  if (r.status !== 201) throw new Error(`publish ${n}: HTTP ${r.status}`);
};

// the recipe, run in the page (the hub's page has the import map for socket.io-client)
const subscribe = (page) => page.evaluate(async ([channel, mode]) => {
  const { LimpetClient } = await import("/static/limpet-client.js");
  const key = `limpet.position.${channel}`;
  const saved = mode === "saved" ? JSON.parse(localStorage.getItem(key) || "null") : null;
  window.got = [];
  window.gaps = [];
  const client = new LimpetClient(location.origin);
  const sub = client.subscribe(channel, {
    position: saved,
    onMessage(msg) {
      window.got.push(msg.data.n);
      localStorage.setItem(key, JSON.stringify({ epoch: msg.epoch, offset: msg.offset }));
    },
    onGap(gap) {
      window.gaps.push(gap.reason);
      localStorage.setItem(key, JSON.stringify(gap.to));
    },
  });
  await sub.ready;
}, [channel, mode]);

const received = (page, n) =>
  page.waitForFunction((n) => window.got.includes(n), n, { timeout: 15000 });

try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => result.errors.push(String(e)));
  await page.goto(`${hub}/?channel=${channel}`);
  await subscribe(page);
  for (let n = 1; n <= 5; n++) await publish(n);
  await received(page, 5);
  result.before = await page.evaluate(() => window.got);
  // the page goes away (its connection with it), five are published meanwhile, and it is
  // opened again: a reload, with the gap made certain (a reload's old page may still take a
  // few messages before it unloads, and save their position)
  await page.goto("about:blank");
  for (let n = 6; n <= 10; n++) await publish(n);
  await page.goto(`${hub}/?channel=${channel}`);
  await subscribe(page);
  for (let n = 11; n <= 12; n++) await publish(n);
  await received(page, 12);
  result.after = await page.evaluate(() => window.got);
  result.gaps = await page.evaluate(() => window.gaps);
} catch (e) {
  result.errors.push(String(e).split("\n")[0]);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
