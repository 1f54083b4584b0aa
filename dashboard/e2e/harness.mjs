// What the end-to-end tests run against: a real `storeplane serve` (API, orchestrator and
// this dashboard from dist/) on a fresh SQLite data dir and a free port, talking to the
// testenv Kubernetes API; accounts made with `storeplane user create`; and Debian's
// Chromium driven by playwright-core. Nothing is skipped: a missing binary, cluster or
// browser fails the run with what to do.
import { spawn, execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const DASHBOARD = join(dirname(fileURLToPath(import.meta.url)), "..");
export const ROOT = join(DASHBOARD, "..");
export const SCREENSHOTS = join(DASHBOARD, "e2e", "screenshots");
export const DOCS_SCREENSHOTS = join(ROOT, "docs", "screenshots");

/** The storeplane binary: $STOREPLANE_BIN, else the debug build in the cargo target dir. */
export function binary() {
  const bin =
    process.env.STOREPLANE_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(ROOT, "target"), "debug", "storeplane");
  if (!existsSync(bin)) {
    throw new Error(`no storeplane binary at ${bin}: run \`cargo build\` (or scripts/dashboard e2e), or set STOREPLANE_BIN`);
  }
  return bin;
}

/** Debian's Chromium: $CHROMIUM, else `chromium` on PATH. */
export function chromiumPath() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  try {
    return execFileSync("sh", ["-c", "command -v chromium"], { encoding: "utf8" }).trim();
  } catch {
    throw new Error("Chromium is not installed: run `apt-get install -y chromium` (scripts/dashboard e2e does)");
  }
}

/** The testenv cluster's kubeconfig, starting the cluster if it is down ($KUBECONFIG wins). */
export function kubeconfig() {
  if (process.env.STOREPLANE_E2E_KUBECONFIG) return process.env.STOREPLANE_E2E_KUBECONFIG;
  const cluster = join(ROOT, "testenv", "cluster");
  execFileSync(cluster, ["up"], { stdio: ["ignore", "ignore", "inherit"] });
  return execFileSync(cluster, ["kubeconfig"], { encoding: "utf8" }).trim();
}

/** The flags every Chromium here runs with; a fresh profile each launch. */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

/** @returns {Promise<import("playwright-core").Browser>} */
export async function launchBrowser() {
  const executablePath = chromiumPath();
  try {
    // playwright-core gives every launch a new temporary user-data-dir.
    return await chromium.launch({ executablePath, args: CHROMIUM_ARGS, headless: true, timeout: 60_000 });
  } catch (e) {
    throw new Error(`Chromium at ${executablePath} did not start: ${e instanceof Error ? e.message : e}`);
  }
}

/**
 * @typedef {object} Server
 * @property {string} url
 * @property {string} dataDir
 * @property {string} log
 * @property {(email: string, opts?: { admin?: boolean }) => { email: string, password: string }} createUser
 * @property {() => Promise<void>} stop
 */

const running = new Set();
function killAll() {
  for (const child of running) child.kill("SIGKILL");
}
process.on("exit", killAll);
for (const sig of /** @type {const} */ (["SIGINT", "SIGTERM"])) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}

/**
 * A blueprints folder (for STOREPLANE_BLUEPRINTS_DIR) whose `woocommerce` overrides the
 * built-in one with a small plan whose memory quota cannot hold MySQL and WordPress
 * together: its stores are accepted and then refused by the cluster.
 * @returns {string}
 */
export function starvedBlueprints() {
  const dir = mkdtempSync(join(tmpdir(), "storeplane-e2e-blueprints-"));
  const src = join(ROOT, "templates", "woocommerce");
  const dst = join(dir, "woocommerce");
  mkdirSync(dst);
  for (const file of readdirSync(src)) {
    let text = readFileSync(join(src, file), "utf8");
    if (file === "blueprint.yaml") {
      const starved = text.replace("limits.memory: 2560Mi", "limits.memory: 1200Mi");
      if (starved === text) throw new Error(`${src}/blueprint.yaml no longer sets limits.memory: 2560Mi for the small plan`);
      text = starved;
    }
    writeFileSync(join(dst, file), text);
  }
  return dir;
}

/**
 * Starts `storeplane serve` with the orchestrator on testenv and the dashboard from
 * dist/ (`dashboardDir: false`: the copy embedded in the binary). Rate limits are
 * raised: the tests make many requests from one address quickly.
 * @param {{ dashboardDir?: string | false, orchestrator?: boolean, env?: Record<string, string> }} [opts]
 * @returns {Promise<Server>}
 */
export async function startServer(opts = {}) {
  const bin = binary();
  const dashboardDir = opts.dashboardDir === false ? null : (opts.dashboardDir ?? join(DASHBOARD, "dist"));
  if (dashboardDir && !existsSync(join(dashboardDir, "index.html"))) {
    throw new Error(`${dashboardDir}/index.html is missing: run \`npm run build\` in dashboard/ first`);
  }
  const dataDir = mkdtempSync(join(tmpdir(), "storeplane-e2e-"));
  const log = join(dataDir, "serve.log");
  const env = {
    ...process.env,
    STOREPLANE_DATA_DIR: dataDir,
    STOREPLANE_LISTEN: "127.0.0.1:0",
    STOREPLANE_RATE_LIMIT: "100000/15m",
    STOREPLANE_CREATE_RATE_LIMIT: "1000/15m",
    STOREPLANE_LOGIN_RATE_LIMIT: "1000/15m",
    STOREPLANE_LOG: process.env.STOREPLANE_LOG ?? "info",
    ...(dashboardDir ? { STOREPLANE_DASHBOARD_DIR: dashboardDir } : {}),
    ...(opts.orchestrator === false ? {} : { KUBECONFIG: kubeconfig() }),
    ...opts.env,
  };
  if (!dashboardDir) delete env.STOREPLANE_DASHBOARD_DIR;
  const args = ["serve", ...(opts.orchestrator === false ? ["--no-orchestrator"] : [])];
  const out = openSync(log, "a");
  const child = spawn(bin, args, { env, stdio: ["ignore", "pipe", out] });
  running.add(child);
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));

  const url = await new Promise((resolve, reject) => {
    let seen = "";
    let found = false;
    const timer = setTimeout(() => reject(new Error(`storeplane serve did not start in 60 s; its log: ${log}\n${tail(log)}`)), 60_000);
    child.stdout?.on("data", (chunk) => {
      if (found) return; // keep draining the pipe
      seen += chunk.toString();
      const m = /storeplane listening on (http:\/\/\S+)/.exec(seen);
      if (m) {
        found = true;
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`storeplane serve exited (${code ?? signal}) before listening; its log: ${log}\n${tail(log)}\n${seen}`));
    });
  });

  return {
    url: /** @type {string} */ (url),
    dataDir,
    log,
    createUser(email, { admin = false } = {}) {
      const outText = execFileSync(bin, ["user", "create", "--email", email, ...(admin ? ["--admin"] : [])], {
        env: { ...env, STOREPLANE_LOG: "warn" },
        encoding: "utf8",
      });
      const m = /^password: (\S+)$/m.exec(outText);
      if (!m?.[1]) throw new Error(`\`storeplane user create\` printed no password:\n${outText}`);
      return { email, password: m[1] };
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 15_000);
        await exited;
        clearTimeout(t);
      }
      running.delete(child);
      if (!process.env.STOREPLANE_E2E_KEEP) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** @param {string} path */
function tail(path) {
  try {
    return readFileSync(path, "utf8").split("\n").slice(-40).join("\n");
  } catch {
    return "(no log)";
  }
}

/**
 * Calls the API directly (setting up what a test is not about).
 * @param {string} base @param {string} method @param {string} path
 * @param {{ token?: string, body?: unknown }} [opts]
 */
export async function apiCall(base, method, path, { token, body } = {}) {
  const res = await fetch(base + path, {
    method,
    headers: {
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const data = text ? JSON.parse(text) : undefined;
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return data;
}

/**
 * Deletes a store and waits until it is gone (404): its namespace deleted, then its row.
 * A server stopped sooner may not have claimed the deletion yet, and would leave the
 * namespace in the cluster for good (scripts/test fails a run that does).
 * @param {string} base @param {string} id @param {string} token @param {number} [timeoutMs]
 */
export async function deleteStore(base, id, token, timeoutMs = 180_000) {
  await apiCall(base, "DELETE", `/api/stores/${id}`, { token });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await fetch(`${base}/api/stores/${id}`, { headers: { Authorization: `Bearer ${token}` } });
    await res.arrayBuffer();
    if (res.status === 404) return;
    if (Date.now() > deadline) throw new Error(`store ${id} still there ${timeoutMs} ms after its deletion (${res.status})`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** @param {string} base @param {{ email: string, password: string }} user @returns {Promise<string>} */
export async function tokenFor(base, user) {
  const s = await apiCall(base, "POST", "/api/auth/login", { body: user });
  return s.token;
}

/**
 * Saves a screenshot under e2e/screenshots/, and under docs/screenshots/ as well when
 * UPDATE_SCREENSHOTS=1 (the committed copies the README shows).
 * @param {import("playwright-core").Page} page @param {string} name
 */
export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const path = join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true, animations: "disabled", caret: "hide" });
  if (process.env.UPDATE_SCREENSHOTS === "1") {
    mkdirSync(DOCS_SCREENSHOTS, { recursive: true });
    copyFileSync(path, join(DOCS_SCREENSHOTS, `dashboard-${name}.png`));
  }
  return path;
}

/**
 * Text on the page whose contrast with its background is below WCAG AA: 4.5:1, or 3:1
 * for large text (24 px, or 18.66 px bold). Disabled controls are exempt, as WCAG says;
 * visually hidden text is skipped.
 * @param {import("playwright-core").Page} page
 * @returns {Promise<{ text: string, ratio: number, color: string, background: string }[]>}
 */
export function contrastProblems(page) {
  return page.evaluate(() => {
    /** @param {string} c */
    const parse = (c) => {
      const m = /rgba?\(([^)]+)\)/.exec(c);
      if (!m?.[1]) return null;
      const [r = 0, g = 0, b = 0, a = 1] = m[1].split(/[\s,/]+/).filter(Boolean).map(Number);
      return { r, g, b, a };
    };
    /** @param {{ r: number, g: number, b: number }} c */
    const luminance = ({ r, g, b }) => {
      const f = (/** @type {number} */ v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    /** @param {Element} el */
    const background = (el) => {
      for (let e = /** @type {Element | null} */ (el); e; e = e.parentElement) {
        const c = parse(getComputedStyle(e).backgroundColor);
        if (c && c.a > 0) return c;
      }
      return { r: 255, g: 255, b: 255, a: 1 };
    };
    const out = [];
    const seen = new Set();
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
      const node = walker.currentNode;
      const el = node.parentElement;
      if (!el || !node.textContent?.trim() || seen.has(el)) continue;
      seen.add(el);
      const rect = el.getBoundingClientRect();
      const cs = getComputedStyle(el);
      if (rect.width <= 1 || rect.height <= 1 || cs.visibility === "hidden" || el.closest(":disabled, noscript")) continue;
      const fg = parse(cs.color);
      if (!fg) continue;
      const bg = background(el);
      const mixed = { r: fg.r * fg.a + bg.r * (1 - fg.a), g: fg.g * fg.a + bg.g * (1 - fg.a), b: fg.b * fg.a + bg.b * (1 - fg.a) };
      const [hi, lo] = [luminance(mixed), luminance(bg)].sort((a, b) => b - a);
      const ratio = ((hi ?? 0) + 0.05) / ((lo ?? 0) + 0.05);
      const size = parseFloat(cs.fontSize);
      const large = size >= 24 || (Number(cs.fontWeight) >= 700 && size >= 18.66);
      if (ratio < (large ? 3 : 4.5)) {
        out.push({
          text: node.textContent.trim().slice(0, 60),
          ratio: Math.round(ratio * 100) / 100,
          color: cs.color,
          background: `rgb(${bg.r}, ${bg.g}, ${bg.b})`,
        });
      }
    }
    return out;
  });
}
