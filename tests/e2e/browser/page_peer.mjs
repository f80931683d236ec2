// The chat page (on limpet-client) in real Chromium as one more subscriber of a channel.
// Usage: node page_peer.mjs URL CHANNEL TOTAL; stdout, one JSON line per step:
//   {"step":"joined"}, then once the page shows offset TOTAL (or after 90 s):
//   {"step":"done", offsets: [...], notes: [system lines], errors: [...]}
import { chromium } from "playwright-core";

const [url, channel, total] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const result = { step: "done", offsets: [], notes: [], errors: [] };
try {
  const page = await (await browser.newContext()).newPage();
  page.on("pageerror", (e) => result.errors.push(String(e)));
  await page.goto(`${url}/?channel=${channel}&user=page`);
  await page.locator("#log li.sys", { hasText: `joined ${channel}` }).waitFor({ timeout: 15000 });
  out({ step: "joined" });
  await page.locator("#log .meta", { hasText: new RegExp(`^#${total} `) }).waitFor({ timeout: 90000 });
} catch (e) {
  result.errors.push(String(e).split("\n")[0]);
}
try {
  const page = browser.contexts()[0].pages()[0];
  result.offsets = await page.$$eval("#log .meta", (els) => els.map((e) => Number(e.textContent.slice(1).split(" ")[0])));
  result.notes = await page.$$eval("#log li.sys, #log li.gap", (els) => els.map((e) => e.textContent));
} catch (e) {
  result.errors.push(String(e).split("\n")[0]);
}
await browser.close();
out(result);
process.exit(0);
