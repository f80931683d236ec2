// Two people in two real Chromium pages, each on a different hub replica, chat in one channel.
// Usage: node chat.mjs URL_A URL_B CHANNEL SCREENSHOT.png [WAIT_MS]  -> a JSON summary on stdout.
// WAIT_MS (default 15000) bounds the wait for alice's message in bob's page: a twin that expects
// it never to come passes less.
import { chromium } from "playwright-core";

const [urlA, urlB, channel, screenshot, waitMs = "15000"] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const result = { joinedA: false, joinedB: false, seenInB: false, seenInA: false, presence: "", errors: [] };
try {
  const open = async (url, user) => {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on("pageerror", (e) => result.errors.push(String(e)));
    await page.goto(url);
    await page.fill("#channel", channel);
    await page.fill("#user", user);
    await page.click("#join");
    await page.locator("#log li.sys", { hasText: `joined ${channel}` }).waitFor({ timeout: 15000 });
    return page;
  };
  const a = await open(urlA, "alice");
  result.joinedA = true;
  const b = await open(urlB, "bob");
  result.joinedB = true;
  await a.fill("#text", "hello from alice");
  await a.press("#text", "Enter");
  await b.locator("#log li", { hasText: "hello from alice" }).waitFor({ timeout: Number(waitMs) });
  result.seenInB = true;
  await b.fill("#text", "hi alice, bob here");
  await b.press("#text", "Enter");
  await a.locator("#log li", { hasText: "hi alice, bob here" }).waitFor({ timeout: 15000 });
  result.seenInA = true;
  // presence names people by the name they joined with, not the one they connected with
  await b.locator("#presence li", { hasText: "alice" }).waitFor({ timeout: 10000 }).catch(() => {});
  result.presence = await b.locator("#presence").innerText();
  result.logA = await a.locator("#log").innerText();
  result.logB = await b.locator("#log").innerText();
  await b.screenshot({ path: screenshot });
} catch (e) {
  result.errors.push(String(e).split("\n")[0]);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
