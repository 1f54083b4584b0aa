// The dashboard end to end: Debian's Chromium (playwright-core) against a real
// `storeplane serve` with its orchestrator on the testenv cluster. Run by
// `scripts/dashboard e2e` (which builds what it needs) or `npm run e2e` in dashboard/.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { apiCall, contrastProblems, deleteStore, launchBrowser, screenshot, starvedBlueprints, startServer, tokenFor } from "./harness.mjs";

/** How long a WooCommerce store may take to become ready or disappear on testenv. */
const CONVERGE_MS = 180_000;

/** @type {import("./harness.mjs").Server} */
let server;
/** @type {import("playwright-core").Browser} */
let browser;
/** @type {{ email: string, password: string }} */
let alice;
/** @type {{ email: string, password: string }} */
let bob;

describe("the dashboard against storeplane serve on testenv", () => {
  before(async () => {
    server = await startServer();
    alice = server.createUser("alice@example.test");
    bob = server.createUser("bob@example.test");
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  /**
   * A fresh browser context (no storage) signed in as `user`, on the store list.
   * @param {{ email: string, password: string }} user
   * @param {{ width: number, height: number }} [viewport]
   * @param {import("./harness.mjs").Server} [on] the server (the suite's by default)
   */
  async function signIn(user, viewport = { width: 1200, height: 900 }, on = server) {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    /** @type {string[]} */
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(on.url + "/");
    await page.waitForURL("**/signin");
    await page.getByLabel("Email").fill(user.email);
    await page.getByLabel("Password").fill(user.password);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { level: 1, name: "Stores" }).waitFor();
    return { context, page, errors };
  }

  /** @param {import("playwright-core").Page} page @param {string} name */
  function storeRow(page, name) {
    return page.locator(`tr[data-store="${name}"]`);
  }

  describe("a store's life in the dashboard", () => {
    test("sign in, create a WooCommerce store, watch it become ready, read its events, delete it", { timeout: 600_000 }, async () => {
      const { context, page, errors } = await signIn(alice);
      // Every text the status region (aria-live) shows from now on (the app navigates
      // without reloading), to check that provisioning says its current phase.
      await page.evaluate(() => {
        const w = /** @type {Window & { statusLog?: string[] }} */ (window);
        w.statusLog = [];
        new MutationObserver(() => {
          const text = document.querySelector(".status-live")?.textContent ?? "";
          if (text && w.statusLog?.at(-1) !== text) w.statusLog?.push(text);
        }).observe(document, { childList: true, subtree: true, characterData: true });
      });

      // An empty list says what to do.
      const empty = page.getByRole("region", { name: "You have no stores yet" });
      await empty.waitFor();
      assert.match(await empty.innerText(), /Choose an engine, give the store a name/);
      await empty.getByRole("link", { name: "Create your first store" }).click();

      // The form is built from the blueprint's schema: defaults, descriptions, fieldsets.
      await page.getByRole("heading", { level: 1, name: "New store" }).waitFor();
      await page.getByRole("radio", { name: "WooCommerce" }).check();
      const title = page.getByLabel("Store title");
      await title.waitFor();
      assert.equal(await title.inputValue(), "My Store");
      assert.equal(await page.getByLabel("Plan").inputValue(), "small");
      assert.equal(await page.getByRole("group", { name: "Storage" }).getByLabel("Database volume").inputValue(), "5Gi");
      const name = "demo-shop";
      await page.getByLabel("Store name").fill(name);
      await title.fill("Demo Shop");
      await screenshot(page, "form");

      const created = page.waitForResponse((r) => r.url().endsWith("/api/stores") && r.request().method() === "POST");
      await page.getByRole("button", { name: "Create store" }).click();
      const store = await (await created).json();
      assert.equal((await created).status(), 201);
      assert.deepEqual(store.params, { title: "Demo Shop" }, "only the changed parameter is sent");

      // The detail page follows the store live over the event stream until it is ready.
      await page.waitForURL(`**/stores/${store.id}`);
      await page.getByRole("heading", { level: 1, name: new RegExp(name) }).waitFor();
      const status = page.locator(".status-live");
      assert.equal(await status.getAttribute("aria-live"), "polite");
      await page.locator(".feed-mode[data-mode=live]").waitFor({ timeout: 30_000 });
      await page.locator("h1 .badge[data-status=ready]").waitFor({ timeout: CONVERGE_MS });
      const log = await page.evaluate(() => /** @type {Window & { statusLog?: string[] }} */ (window).statusLog ?? []);
      assert.ok(
        log.some((t) => /^Provisioning — .+: .+/.test(t)),
        `the status region showed the current phase while provisioning: ${JSON.stringify(log)}`,
      );
      const storefront = status.getByRole("link", { name: new RegExp(`http://${name}\\.`) }).first();
      assert.match(await storefront.getAttribute("href") ?? "", new RegExp(`^http://${name}\\.[^/]+/$`));

      // Its URL and status are on the list too.
      await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Stores" }).click();
      const row = storeRow(page, name);
      await row.waitFor();
      assert.match(await row.innerText(), /WooCommerce/);
      assert.equal(await row.locator(".badge").getAttribute("data-status"), "ready");
      assert.match(await row.getByRole("link", { name: /storefront/ }).getAttribute("href") ?? "", new RegExp(`^http://${name}\\.`));
      assert.match(await row.locator("time").innerText(), /just now|second|minute/);

      // Open it from the list: the event log, oldest first, from request to ready.
      await row.getByRole("link", { name, exact: true }).click();
      await page.waitForURL(`**/stores/${store.id}`);
      const events = page.locator(".timeline .event");
      await page.locator('.timeline .event[data-type="store_ready"]').waitFor();
      const types = await events.evaluateAll((els) => els.map((e) => e.getAttribute("data-type")));
      assert.equal(types[0], "created");
      assert.ok(types.includes("namespace_created"), `events: ${types}`);
      assert.ok(types.includes("phase_completed"), `events: ${types}`);
      assert.equal(types.at(-1), "store_ready");
      assert.match(await page.locator(".facts").innerText(), /Demo Shop/);
      await screenshot(page, "detail");
      assert.deepEqual(await contrastProblems(page), [], "text contrast meets WCAG AA on a ready store");

      // Delete asks first; Escape keeps the store.
      await page.getByRole("button", { name: "Delete store" }).click();
      const dialog = page.getByRole("dialog", { name: `Delete “${name}”?` });
      await dialog.waitFor();
      assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Cancel", "Cancel has focus first");
      await page.keyboard.press("Escape");
      await dialog.waitFor({ state: "hidden" });
      assert.equal(await page.locator("h1 .badge").getAttribute("data-status"), "ready");

      await page.getByRole("button", { name: "Delete store" }).click();
      await dialog.getByRole("button", { name: "Delete store" }).click();
      await page.waitForURL(server.url + "/");
      await page.getByRole("status").filter({ hasText: `Deleting “${name}”` }).waitFor();
      // The list refreshes while the store is deleting, and it disappears.
      await storeRow(page, name).waitFor({ state: "detached", timeout: CONVERGE_MS });
      await page.getByRole("region", { name: "You have no stores yet" }).waitFor();
      const left = await apiCall(server.url, "GET", "/api/stores", { token: await tokenFor(server.url, alice) });
      assert.deepEqual(left.items, []);

      assert.deepEqual(errors, [], "no uncaught errors in the page");
      await context.close();
    });
  });

  describe("the create form", () => {
    test("a bad name and a bad parameter show the API's own messages at their fields", { timeout: 120_000 }, async () => {
      const { context, page } = await signIn(alice);
      await page.goto(server.url + "/stores/new");
      await page.getByLabel("Store name").fill("Bad Name");
      const db = page.getByRole("group", { name: "Storage" }).getByLabel("Database volume");
      await db.fill("5X");

      const answered = page.waitForResponse((r) => r.url().endsWith("/api/stores") && r.request().method() === "POST");
      await page.getByRole("button", { name: "Create store" }).click();
      const res = await answered;
      assert.equal(res.status(), 422);
      assert.match(res.headers()["content-type"] ?? "", /application\/problem\+json/);
      /** @type {{ errors: { field: string, message: string }[] }} */
      const problem = await res.json();
      const byField = Object.fromEntries(problem.errors.map((e) => [e.field, e.message]));
      assert.ok(byField.name, `the API refused the name: ${JSON.stringify(problem)}`);

      // The name's message, word for word, next to the name field, tied to it.
      const nameInput = page.getByLabel("Store name");
      await page.locator("#store-name-error").waitFor();
      assert.equal((await page.locator("#store-name-error").innerText()).replace(/^⚠\s*/, ""), byField.name);
      assert.equal(await nameInput.getAttribute("aria-invalid"), "true");
      assert.match(await nameInput.getAttribute("aria-describedby") ?? "", /^store-name-error\b/);

      // The API checks the name first; fix it and the parameter's message arrives.
      await nameInput.fill("good-name-but-bad-volume");
      const again = page.waitForResponse((r) => r.url().endsWith("/api/stores") && r.request().method() === "POST");
      await page.getByRole("button", { name: "Create store" }).click();
      const second = await (await again).json();
      const volume = second.errors.find((/** @type {{ field: string }} */ e) => e.field === "params/storage/database");
      assert.ok(volume, `the API refused the volume: ${JSON.stringify(second)}`);
      const dbError = page.locator(`#${await db.getAttribute("id")}-error`);
      await dbError.waitFor();
      assert.equal((await dbError.innerText()).replace(/^⚠\s*/, ""), volume.message);
      assert.equal(await db.getAttribute("aria-invalid"), "true");
      assert.equal(await nameInput.getAttribute("aria-invalid"), null, "the fixed name is no longer marked");

      assert.deepEqual(await contrastProblems(page), [], "text contrast meets WCAG AA on the refused form");

      // The summary at the top has focus and links to the field.
      const summary = page.locator(".error-summary");
      assert.equal(await page.evaluate(() => document.activeElement?.classList.contains("error-summary")), true);
      await summary.getByRole("link", { name: /Database volume/ }).click();
      assert.equal(await page.evaluate(() => document.activeElement?.id), await db.getAttribute("id"));

      // Valid sizes that together overrun the small plan's 20Gi storage quota (30Gi +
      // 5Gi): refused at the plan before anything is created, not failed later.
      await db.fill("30Gi");
      const third = page.waitForResponse((r) => r.url().endsWith("/api/stores") && r.request().method() === "POST");
      await page.getByRole("button", { name: "Create store" }).click();
      const oversized = await (await third).json();
      const planProblem = oversized.errors.find((/** @type {{ field: string }} */ e) => e.field === "params/plan");
      assert.ok(planProblem, `the API refused the plan: ${JSON.stringify(oversized)}`);
      assert.match(planProblem.message, /plan `small` is too small .*35Gi.*20Gi/);
      const plan = page.getByLabel("Plan", { exact: true });
      const planError = page.locator(`#${await plan.getAttribute("id")}-error`);
      await planError.waitFor();
      assert.equal((await planError.innerText()).replace(/^⚠\s*/, ""), planProblem.message);

      const stores = await apiCall(server.url, "GET", "/api/stores", { token: await tokenFor(server.url, alice) });
      assert.deepEqual(stores.items, [], "nothing was created");
      await context.close();
    });

    test("every control has a label, and the pages work from 360 px up without sideways scrolling, even with the longest store name", { timeout: 120_000 }, async () => {
      const { context, page } = await signIn(alice, { width: 360, height: 740 });
      await page.goto(server.url + "/stores/new");
      await page.getByLabel("Store title").waitFor();
      const unlabelled = await page.evaluate(() =>
        Array.from(document.querySelectorAll("input, select, textarea"))
          .filter((el) => !(/** @type {HTMLInputElement} */ (el).labels?.length))
          .map((el) => el.outerHTML),
      );
      assert.deepEqual(unlabelled, []);
      assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), "no horizontal scroll");

      // Keyboard: the first Tab reaches the skip link, which leads to the main content.
      await page.goto(server.url + "/");
      await page.getByRole("heading", { level: 1, name: "Stores" }).waitFor();
      await page.keyboard.press("Tab");
      assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Skip to content");
      const ring = await page.evaluate(() => getComputedStyle(/** @type {Element} */ (document.activeElement)).outlineStyle);
      assert.equal(ring, "solid", "the focused element shows a focus ring");
      assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), "no horizontal scroll");

      // The longest name a store may have fits the list at the widths between the
      // card layout and a wide screen too.
      const longName = "a-store-name-as-long-as-names-may-be-xyz";
      assert.equal(longName.length, 40);
      const token = await tokenFor(server.url, alice);
      const long = await apiCall(server.url, "POST", "/api/stores", { token, body: { name: longName, engine: "woocommerce" } });
      try {
        await page.reload();
        for (const width of [360, 700, 900]) {
          await page.setViewportSize({ width, height: 740 });
          await storeRow(page, longName).waitFor();
          assert.ok(
            await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth),
            `no horizontal scroll at ${width} px with a ${longName.length}-character name`,
          );
        }
        // Its detail page (name, badge, URLs, timeline) at the narrowest width too.
        await page.setViewportSize({ width: 360, height: 740 });
        await page.goto(`${server.url}/stores/${long.id}`);
        await page.getByRole("heading", { level: 1, name: new RegExp(longName) }).waitFor();
        await page.locator(".timeline .event").first().waitFor();
        assert.ok(
          await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth),
          "no horizontal scroll on the detail page at 360 px",
        );
      } finally {
        await deleteStore(server.url, long.id, token);
      }
      await context.close();
    });
  });

  describe("failures", () => {
    test("a store that fails shows the reason prominently, and Retry provisions it again", { timeout: 300_000 }, async () => {
      // A second server whose WooCommerce small plan's memory quota cannot hold MySQL
      // and WordPress together: the cluster refuses the pods, the store fails.
      const tight = await startServer({ env: { STOREPLANE_BLUEPRINTS_DIR: starvedBlueprints() } });
      const carol = tight.createUser("carol@example.test");
      const token = await tokenFor(tight.url, carol);
      // A store that works, so the list has both kinds.
      const medusa = await apiCall(tight.url, "POST", "/api/stores", {
        token,
        body: { name: "north-wind", engine: "medusa" },
      });
      /** @type {string | undefined} */
      let failedId;
      try {
        const { context, page, errors } = await signIn(carol, undefined, tight);
        await page.goto(tight.url + "/stores/new");
        await page.getByLabel("Store name").fill("tight-fit");
        await page.getByRole("button", { name: "Create store" }).click();
        await page.waitForURL(/\/stores\/[0-9a-f-]{36}$/);
        failedId = page.url().split("/").pop();

        const failure = page.locator(".status-live .failure");
        await failure.waitFor({ timeout: CONVERGE_MS });
        const api = await apiCall(tight.url, "GET", `/api/stores/${failedId}`, { token });
        assert.equal(api.status, "failed");
        assert.equal(await failure.locator(".failure-reason").innerText(), api.error_message);
        assert.match(api.error_message, /exceeded quota/);
        const badge = page.locator("h1 .badge");
        assert.equal(await badge.getAttribute("data-status"), "failed");
        assert.match(await badge.innerText(), /Failed/, "the status is said in words, not colour alone");
        await page.locator('.timeline .event[data-type="provisioning_failed"]').waitFor();
        await screenshot(page, "detail-failed");
        assert.deepEqual(await contrastProblems(page), [], "text contrast meets WCAG AA on a failed store");

        const retried = page.waitForResponse((r) => r.url().endsWith(`/api/stores/${failedId}/retry`));
        await failure.getByRole("button", { name: "Retry" }).click();
        assert.equal((await retried).status(), 202);
        await page.locator('.timeline .event[data-type="retry_requested"]').waitFor({ timeout: 30_000 });
        await page.locator('.timeline .event[data-type="provisioning_failed"]').nth(1).waitFor({ timeout: CONVERGE_MS });
        await failure.waitFor();

        // The list shows the reason too, next to a store that works.
        await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Stores" }).click();
        const failedRow = storeRow(page, "tight-fit");
        await failedRow.locator('.badge[data-status="failed"]').waitFor();
        assert.match(await failedRow.locator(".phase-failed").innerText(), /exceeded quota/);
        await storeRow(page, "north-wind").locator('.badge[data-status="ready"]').waitFor({ timeout: CONVERGE_MS });
        await screenshot(page, "list");
        await page.setViewportSize({ width: 360, height: 740 });
        assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), "no horizontal scroll");
        await screenshot(page, "list-narrow");
        assert.deepEqual(errors, [], "no uncaught errors in the page");
        await context.close();
      } finally {
        await Promise.all([
          deleteStore(tight.url, medusa.id, token),
          ...(failedId ? [deleteStore(tight.url, failedId, token)] : []),
        ]);
        await tight.stop();
      }
    });
  });

  describe("delivery", () => {
    test("the page, its script and its stylesheet arrive compressed and the app runs", { timeout: 120_000 }, async () => {
      const context = await browser.newContext();
      const page = await context.newPage();
      /** @type {{ url: string, encoding: string | undefined, vary: string | undefined }[]} */
      const got = [];
      page.on("response", (r) => {
        const path = new URL(r.url()).pathname;
        if (path === "/" || path.startsWith("/assets/")) {
          got.push({ url: path, encoding: r.headers()["content-encoding"], vary: r.headers()["vary"] });
        }
      });
      await page.goto(server.url + "/");
      await page.getByLabel("Password").waitFor();
      const scripts = got.filter((g) => /\.(js|css)$/.test(g.url));
      assert.ok(scripts.length >= 2, `the script and the stylesheet were loaded: ${JSON.stringify(got)}`);
      // Chromium accepts Brotli; index.html has a Brotli copy too.
      for (const g of got) {
        assert.equal(g.encoding, "br", `${g.url} was sent with content-encoding br`);
        assert.match(g.vary ?? "", /accept-encoding/i, `${g.url} says it varies by Accept-Encoding`);
      }
      await context.close();
    });
  });

  describe("accounts", () => {
    test("another account's store is neither listed nor readable", { timeout: 120_000 }, async () => {
      const bobToken = await tokenFor(server.url, bob);
      const bobs = await apiCall(server.url, "POST", "/api/stores", {
        token: bobToken,
        body: { name: "bobs-books", engine: "woocommerce" },
      });
      try {
        const asBob = await signIn(bob);
        await storeRow(asBob.page, "bobs-books").waitFor();
        await asBob.context.close();

        const { context, page } = await signIn(alice);
        await page.locator("table.stores, section.empty").first().waitFor();
        assert.equal(await storeRow(page, "bobs-books").count(), 0);
        await page.goto(`${server.url}/stores/${bobs.id}`);
        await page.getByRole("heading", { level: 1, name: "Store not found" }).waitFor();
        assert.doesNotMatch(await page.locator("main").innerText(), /bobs-books/);
        await context.close();
      } finally {
        await deleteStore(server.url, bobs.id, bobToken);
      }
    });

    test("signing out ends the session; a revoked token sends the page back to sign-in", { timeout: 120_000 }, async () => {
      const { context, page } = await signIn(alice);
      const before = await page.evaluate(() => JSON.parse(sessionStorage.getItem("storeplane.session") ?? "{}").token);
      assert.match(before, /^sp_/);
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.waitForURL("**/signin");
      await page.getByRole("status").filter({ hasText: "You are signed out." }).waitFor();
      // The page forgot the token at once and revoked it on the server in the background:
      // it stops working (within the 5 s the server trusts a verified token).
      const revokedBy = Date.now() + 15_000;
      for (;;) {
        const res = await fetch(server.url + "/api/me", { headers: { Authorization: `Bearer ${before}` } });
        await res.arrayBuffer();
        if (res.status === 401) break;
        assert.equal(res.status, 200);
        assert.ok(Date.now() < revokedBy, "the signed-out token still works after 15 s");
        await new Promise((r) => setTimeout(r, 500));
      }
      await page.goto(server.url + "/stores/new");
      await page.waitForURL("**/signin?next=%2Fstores%2Fnew");

      // Sign in again (and land where the person was going), then revoke the token behind
      // the page's back: the next call's 401 ends the session and asks to sign in again.
      await page.getByLabel("Email").fill(alice.email);
      await page.getByLabel("Password").fill(alice.password);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.waitForURL("**/stores/new");
      // Let the page finish loading first: a call still in flight when the token is
      // revoked would end the session before the click below (a race, seen in CI).
      await page.getByLabel("Store title").waitFor();
      await page.waitForLoadState("networkidle");
      const token = await page.evaluate(() => JSON.parse(sessionStorage.getItem("storeplane.session") ?? "{}").token);
      assert.match(token, /^sp_/);
      await apiCall(server.url, "POST", "/api/auth/logout", { token });
      await page.waitForTimeout(5_500); // the server trusts a verified token for 5 s
      await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Stores" }).click();
      await page.waitForURL("**/signin**");
      await page.getByRole("status").filter({ hasText: "Your session has ended" }).waitFor();
      assert.equal(await page.evaluate(() => sessionStorage.getItem("storeplane.session")), null);
      await context.close();
    });
  });

  describe("live updates", () => {
    test("without the event stream, the detail page falls back to a 5-second refresh", { timeout: 300_000 }, async () => {
      const token = await tokenFor(server.url, alice);
      const store = await apiCall(server.url, "POST", "/api/stores", {
        token,
        body: { name: "no-stream", engine: "woocommerce" },
      });
      try {
        const { context, page } = await signIn(alice);
        await context.route("**/events/stream**", (route) => route.abort("connectionrefused"));
        /** @type {number[]} */
        const polls = [];
        // Each refresh reads the store (and its events only when its latest event moved).
        page.on("request", (r) => {
          if (new URL(r.url()).pathname === `/api/stores/${store.id}`) polls.push(Date.now());
        });
        await page.goto(`${server.url}/stores/${store.id}`);
        await page.locator(".feed-mode[data-mode=polling]").waitFor({ timeout: 30_000 });
        const pollingSince = Date.now() - 500;
        assert.match(await page.locator(".feed-mode").innerText(), /Refreshing every 5 s/);
        await page.locator("h1 .badge[data-status=ready]").waitFor({ timeout: CONVERGE_MS });
        await page.locator('.timeline .event[data-type="store_ready"]').waitFor({ timeout: 15_000 });
        await page.waitForTimeout(11_000);
        const refreshes = polls.filter((t) => t >= pollingSince);
        const gaps = refreshes.slice(1).map((t, i) => t - (refreshes[i] ?? t));
        assert.ok(refreshes.length >= 3, `refreshed ${refreshes.length} times`);
        // Every 5 s; after six refreshes the stream is tried again (three attempts,
        // 1 s and 2 s apart), which stretches one gap.
        for (const g of gaps) assert.ok(g >= 4_500 && g < 12_000, `refreshes ${gaps} ms apart`);
        assert.ok(gaps.some((g) => g < 6_000), `refreshes ${gaps} ms apart`);
        await context.close();
      } finally {
        await deleteStore(server.url, store.id, token);
      }
    });
  });
});
