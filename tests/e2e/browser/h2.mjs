// The official socket.io client in Chromium over TLS to limpet (--affinity engineio): which
// protocol the page and its WebSocket used, and whether every answer came from one backend.
// Usage: node h2.mjs URL SPKI_SHA256_BASE64 -> JSON summary on stdout.
import { chromium } from "playwright-core";
import { fileURLToPath } from "node:url";

const [url, spki] = process.argv.slice(2);
const host = new URL(url).hostname;
const client = fileURLToPath(new URL("./node_modules/socket.io-client/dist/socket.io.min.js", import.meta.url));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    `--host-resolver-rules=MAP ${host} 127.0.0.1`, `--ignore-certificate-errors-spki-list=${spki}`],
});
const result = { pageProtocol: "", backends: [], transport: "", errors: [] };
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => result.errors.push(String(e)));
  const resp = await page.goto(url);
  result.pageProtocol = await page.evaluate(() => performance.getEntriesByType("navigation")[0].nextHopProtocol);
  if (resp.status() !== 200) result.errors.push(`status ${resp.status()}`);
  await page.addScriptTag({ path: client });
  const out = await page.evaluate(() => new Promise((resolve, reject) => {
    const names = [];
    const socket = io({ transports: ["polling", "websocket"], reconnection: false });
    const timer = setTimeout(() => reject(new Error(`timeout after ${names.length} answers`)), 20000);
    socket.on("connect_error", (e) => reject(new Error(`connect_error: ${e.message}`)));
    socket.on("whoami", (msg) => names.push(msg.name));
    socket.on("connect", () => {
      // answers over polling first, then over the upgraded transport
      const ask = (left) => socket.emit("whoami", null, (msg) => {
        names.push(msg.name);
        if (left > 0) {
          setTimeout(() => ask(left - 1), 50);
        } else if (socket.io.engine.transport.name !== "websocket") {
          socket.io.engine.once("upgrade", () => ask(3));
        } else {
          clearTimeout(timer);
          resolve({ names, transport: socket.io.engine.transport.name });
          socket.close();
        }
      });
      ask(3);
    });
  }));
  result.backends = out.names;
  result.transport = out.transport;
} catch (e) {
  result.errors.push(String(e).split("\n")[0]);
} finally {
  await browser.close();
  console.log(JSON.stringify(result));
}
