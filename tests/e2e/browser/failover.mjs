// The chat page (on limpet-client) in real Chromium across a hub replica kill.
// Usage: node failover.mjs URL CHANNEL SCREENSHOT.png; stdout, one JSON line per step:
//   {"step":"joined"}   then waits for a line on stdin (the test kills the page's replica and
//                       publishes over HTTP), then the page must show every NEEDLE given on that
//                       line (JSON list) and a "rejoined" line; it then sends "after-failover"
//   {"step":"done", log, status, errors}
import readline from "node:readline";
import { chromium } from "playwright-core";

const [url, channel, screenshot] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const result = { step: "done", log: "", status: "", errors: [] };
try {
  const page = await (await browser.newContext()).newPage();
  page.on("pageerror", (e) => result.errors.push(String(e)));
  await page.goto(`${url}/?channel=${channel}&user=dora&say=before-failover`);
  await page.locator("#log li", { hasText: "before-failover" }).waitFor({ timeout: 15000 });
  out({ step: "joined" });
  const needles = JSON.parse((await lines.next()).value);
  for (const needle of needles) await page.locator("#log li", { hasText: needle }).first().waitFor({ timeout: 20000 });
  await page.locator("#log li.sys", { hasText: "rejoined" }).waitFor({ timeout: 20000 });
  await page.fill("#text", "after-failover");
  await page.press("#text", "Enter");
  await page.locator("#log li", { hasText: "after-failover" }).waitFor({ timeout: 15000 });
  result.log = await page.locator("#log").innerText();
  result.status = await page.locator("#status").innerText();
  await page.screenshot({ path: screenshot });
} catch (e) {
  result.errors.push(String(e).split("\n")[0]);
} finally {
  await browser.close();
}
out(result);
process.exit(0);
