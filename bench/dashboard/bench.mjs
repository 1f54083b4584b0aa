// The dashboard's speed, measured: the production bundle's size (raw and gzipped, per
// file and in total, against the 250 KB gzip budget) and its first load on localhost in
// Debian's Chromium (playwright-core) from a real `storeplane serve` serving the copy
// embedded in the binary. Each load is cold: a new browser context (empty cache and
// storage) per load; one warm-up load is discarded, then the median of 10 is reported.
// Writes bench/out/dashboard.md (copied into bench/RESULTS.md).
//
//   scripts/dashboard bench            (builds the dashboard and a release binary first)
//   node bench/dashboard/bench.mjs     (STOREPLANE_BIN=… to choose the binary; LOADS=10)
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { apiCall, binary, chromiumPath, launchBrowser, startServer, tokenFor } from "../../dashboard/e2e/harness.mjs";
import { BUDGET_GZIP_BYTES, kb, measure } from "../../dashboard/scripts/size.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, "..", "..");
const DIST = join(ROOT, "dashboard", "dist");
const OUT = join(ROOT, "bench", "out", "dashboard.md");
const LOADS = Number(process.env.LOADS ?? 10);
const BUDGET_LOAD_MS = 1000;

/** @param {number[]} xs */
function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] ?? 0) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
}

/** @param {number[]} xs */
const range = (xs) => `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`;

// Records when the app has drawn what a person came for (the first element matching
// `selector` under #root), on the page's own clock.
const WATCH = (/** @type {string} */ selector) => {
  const w = /** @type {Window & { __ready?: number }} */ (window);
  new MutationObserver((_, obs) => {
    if (!w.__ready && document.querySelector(selector)) {
      w.__ready = performance.now();
      obs.disconnect();
    }
  }).observe(document, { childList: true, subtree: true });
};

/**
 * One cold load of `url`: navigation start → load event, first contentful paint, and
 * the app's content rendered, in ms; bytes transferred.
 * @param {import("../../dashboard/node_modules/playwright-core/index.js").Browser} browser @param {string} url @param {string} selector
 * @param {string | null} session a sessionStorage value to be signed in with
 */
async function coldLoad(browser, url, selector, session) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.addInitScript(WATCH, selector);
  if (session) {
    await context.addInitScript((/** @type {string} */ s) => sessionStorage.setItem("storeplane.session", s), session);
  }
  const page = await context.newPage();
  await page.goto(url, { waitUntil: "load" });
  await page.waitForFunction(() => /** @type {Window & { __ready?: number }} */ (window).__ready !== undefined);
  const m = await page.evaluate(async () => {
    const nav = /** @type {PerformanceNavigationTiming} */ (performance.getEntriesByType("navigation")[0]);
    // The paint entry is recorded when the frame is presented, which on a fast load can
    // come after the load event and the content: wait for it (buffered), up to 5 s.
    const fcp = await new Promise((/** @type {(e: PerformanceEntry | undefined) => void} */ resolve) => {
      new PerformanceObserver((list, obs) => {
        const entry = list.getEntries().find((p) => p.name === "first-contentful-paint");
        if (entry) {
          obs.disconnect();
          resolve(entry);
        }
      }).observe({ type: "paint", buffered: true });
      setTimeout(() => resolve(undefined), 5000);
    });
    const resources = /** @type {PerformanceResourceTiming[]} */ (performance.getEntriesByType("resource"));
    return {
      load: nav.loadEventEnd - nav.startTime,
      dcl: nav.domContentLoadedEventEnd - nav.startTime,
      fcp: fcp ? fcp.startTime : NaN,
      ready: /** @type {Window & { __ready?: number }} */ (window).__ready ?? NaN,
      bytes: nav.transferSize + resources.reduce((n, r) => n + r.transferSize, 0),
      requests: 1 + resources.length,
    };
  });
  await context.close();
  return m;
}

/** @param {string} cmd @param {string[]} args */
function sh(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: "utf8" }).trim();
  } catch {
    return "?";
  }
}

function versions() {
  const lock = JSON.parse(readFileSync(join(ROOT, "dashboard", "package-lock.json"), "utf8"));
  /** @param {string} name */
  const v = (name) => lock.packages?.[`node_modules/${name}`]?.version ?? "?";
  return `React ${v("react")}, Vite ${v("vite")}, openapi-fetch ${v("openapi-fetch")}, playwright-core ${v("playwright-core")}`;
}

const size = measure(DIST);
// What goes over the wire to a browser that accepts Brotli: each file's `.br` copy, or the
// file itself where the build wrote none.
const brotli = size.files.reduce((n, f) => {
  const copy = join(DIST, `${f.file}.br`);
  return n + (existsSync(copy) ? statSync(copy).size : f.raw);
}, 0);
const server = await startServer({ dashboardDir: false, orchestrator: false });
/** @type {import("../../dashboard/node_modules/playwright-core/index.js").Browser | undefined} */
let browser;
try {
  const user = server.createUser("bench@example.test");
  const token = await tokenFor(server.url, user);
  for (const name of ["corner-books", "north-wind", "tea-house"]) {
    await apiCall(server.url, "POST", "/api/stores", { token, body: { name, engine: "woocommerce" } });
  }
  const me = await apiCall(server.url, "GET", "/api/me", { token });
  const session = JSON.stringify({ token, expiresAt: new Date(Date.now() + 3600_000).toISOString(), user: me });

  browser = await launchBrowser();
  const cases = [
    { name: "sign-in page (signed out)", url: `${server.url}/`, selector: "form input[type=password]", session: null },
    { name: "store list (signed in, 3 stores)", url: `${server.url}/`, selector: "table.stores tbody tr", session },
  ];
  const results = [];
  for (const c of cases) {
    await coldLoad(browser, c.url, c.selector, c.session); // warm-up, discarded
    const runs = [];
    for (let i = 0; i < LOADS; i++) runs.push(await coldLoad(browser, c.url, c.selector, c.session));
    results.push({ ...c, runs });
  }
  const chromiumVersion = sh(chromiumPath(), ["--version"]);

  const sizeRows = size.files.map((f) => `| \`${f.file}\` | ${kb(f.raw)} | ${kb(f.gzip)} |`).join("\n");
  const loadRows = results
    .map(({ name, runs }) => {
      const col = (/** @type {"load" | "fcp" | "ready" | "dcl"} */ k) => {
        const xs = runs.map((r) => r[k]).filter((x) => Number.isFinite(x));
        const missing = runs.length - xs.length;
        if (xs.length === 0) return "not recorded";
        return `${median(xs).toFixed(0)} ms (${range(xs)})${missing ? `, missing in ${missing} of ${runs.length}` : ""}`;
      };
      const load = median(runs.map((r) => r.load));
      return `| ${name} | ${col("fcp")} | ${col("dcl")} | ${col("load")} | ${col("ready")} | ${kb(runs[0]?.bytes ?? 0)} in ${runs[0]?.requests} requests | ${load < BUDGET_LOAD_MS ? "yes" : "**no**"} |`;
    })
    .join("\n");
  const worstLoad = Math.max(...results.map(({ runs }) => median(runs.map((r) => r.load))));
  const cpu = cpus()[0]?.model ?? "?";
  const md = `# Dashboard speed

Measured by \`bench/dashboard/bench.mjs\` (run it with \`scripts/dashboard bench\`, which
first builds the dashboard and a release binary that embeds it).

- Date: ${new Date().toISOString().replace(/\.\d+Z$/, "Z")}
- Machine: ${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB memory, ${sh("uname", ["-sr"])}
- Browser: ${chromiumVersion} (Debian), headless, driven by playwright-core
- Node ${process.version}; ${versions()}
- Server: \`${relative(ROOT, binary())} serve --no-orchestrator\` on 127.0.0.1 (SQLite; the dashboard embedded in the binary)

## Bundle size (budget: ${kb(BUDGET_GZIP_BYTES)} gzipped)

Every file of \`dashboard/dist/\`, raw and gzipped with node's zlib at level 9
(\`dashboard/scripts/size.mjs\`, which \`scripts/test\` runs and which fails over budget).

| file | raw | gzip |
|---|---:|---:|
${sizeRows}
| **total** | **${kb(size.raw)}** | **${kb(size.gzip)}** |

${size.gzip <= BUDGET_GZIP_BYTES ? "Within" : "**Over**"} budget: ${kb(size.gzip)} of ${kb(BUDGET_GZIP_BYTES)} gzipped (${((size.gzip / BUDGET_GZIP_BYTES) * 100).toFixed(0)} %).
\`storeplane serve\` sends the Brotli or gzip copy the build writes next to each text file
(\`dashboard/scripts/precompress.mjs\`: ${kb(brotli)} in Brotli at quality 11) to
a browser that accepts it, so the bytes on the wire below are the compressed sizes.

## First load on localhost (budget: under ${BUDGET_LOAD_MS} ms)

Median of ${LOADS} cold loads (range in brackets), each in a new browser context (empty
HTTP cache, cookies and storage), after one discarded warm-up load. Times are from
navigation start (\`performance.getEntriesByType("navigation")\`): first contentful
paint (\`paint\` entries), DOMContentLoaded, the load event, and when the page's content
was rendered (the sign-in form; the store list's first row, which needs \`/api/me\` and
\`/api/stores\` to answer).

| page | first contentful paint | DOMContentLoaded | load event | content rendered | transferred | load < ${BUDGET_LOAD_MS} ms |
|---|---:|---:|---:|---:|---:|:---:|
${loadRows}

${worstLoad < BUDGET_LOAD_MS ? "Within" : "**Over**"} budget: the slowest median load event is ${worstLoad.toFixed(0)} ms.
`;
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(OUT, md);
  console.log(md);
  if (size.gzip > BUDGET_GZIP_BYTES || worstLoad >= BUDGET_LOAD_MS) process.exitCode = 1;
} finally {
  await browser?.close();
  await server.stop();
}
