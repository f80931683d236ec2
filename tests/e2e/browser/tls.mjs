// Chromium over https:// and wss:// through the proxy's TLS termination.
// Usage: node tls.mjs URL SPKI_SHA256_BASE64 -> JSON summary on stdout.
// The browser trusts exactly the test certificate (by its public key hash) and resolves the
// URL's host name to 127.0.0.1, so SNI and the name check are real.
import { chromium } from "playwright-core";

const [url, spki] = process.argv.slice(2);
const host = new URL(url).hostname;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    `--host-resolver-rules=MAP ${host} 127.0.0.1`, `--ignore-certificate-errors-spki-list=${spki}`],
});
const result = { backend: "", secureCookie: false, echo: "", errors: [] };
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  const resp = await page.goto(url);
  if (resp.status() !== 200) result.errors.push(`status ${resp.status()}`);
  result.backend = (await page.innerText("body")).split("\n")[0];
  result.secureCookie = (await context.cookies()).some((c) => c.name === "limpet" && c.secure);
  const wsUrl = url.replace(/^https/, "wss") + "ws";
  result.echo = await page.evaluate((u) => new Promise((resolve, reject) => {
    const ws = new WebSocket(u);
    ws.onopen = () => ws.send("hello over wss");
    ws.onmessage = (e) => { resolve(e.data); ws.close(); };
    ws.onerror = () => reject(new Error("websocket error"));
  }), wsUrl);
} catch (e) {
  result.errors.push(String(e));
} finally {
  await browser.close();
  console.log(JSON.stringify(result));
}
