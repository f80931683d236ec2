// The proxy's admin dashboard in real Chromium, driven step by step by the Python test.
// Usage: node dashboard.mjs ADMIN_URL VICTIM DRAINED TOKEN SCREENSHOT.png
// stdout: "ready" once every backend shows healthy; then waits for a line on stdin (the test
// killed VICTIM), sees it ejected live, tries to drain DRAINED without and with the token, and
// prints a JSON summary as its last line.
import { chromium } from "playwright-core";
import readline from "node:readline";

const [adminUrl, victim, drained, token, screenshot] = process.argv.slice(2);
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const result = { healthyAtStart: false, sawEjected: false, refusedWithoutToken: "", drained: false,
  updatesBefore: 0, updatesAfter: 0, reloads: 0, errors: [] };
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => result.errors.push(String(e)));
  page.on("load", () => { result.reloads += 1; });
  await page.goto(adminUrl);
  const row = (id) => page.locator(`tr[data-backend="${id}"]`);
  await row(victim).and(page.locator('[data-state="healthy"]')).waitFor({ timeout: 15000 });
  result.healthyAtStart = true;
  result.updatesBefore = Number(await page.evaluate(() => document.body.dataset.updates));
  console.log("ready");
  await lines.next();  // the test has killed the victim
  await row(victim).and(page.locator('[data-state="ejected"]')).waitFor({ timeout: 20000 });
  result.sawEjected = true;
  result.updatesAfter = Number(await page.evaluate(() => document.body.dataset.updates));
  // without the token: refused, and the page says so
  await page.click(`button[data-backend="${drained}"]`);
  await page.locator("#message", { hasText: "401" }).waitFor({ timeout: 10000 });
  result.refusedWithoutToken = await page.locator("#message").innerText();
  await page.fill("#token", token);
  await page.click(`button[data-backend="${drained}"]`);
  await row(drained).and(page.locator('[data-state="draining"]')).waitFor({ timeout: 10000 });
  result.drained = true;
  await page.screenshot({ path: screenshot });
} catch (e) {
  result.errors.push(String(e));
} finally {
  await browser.close();
  console.log(JSON.stringify(result));
  process.exit(0);
}
