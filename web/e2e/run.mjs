// End-to-end tests of the web client in a real browser: Debian's Chromium driven by
// playwright-core (no browser download), against the real services behind the built-in
// gateway. tests/tests/web.rs starts the system, seeds the catalogue and a promo code,
// runs this script phase by phase (stopping services in between) and fails when it does.
//
//   node e2e/run.mjs <phase>     phases: shop, exercises, outage
//
// Environment: BASE_URL (the gateway), ARTIFACTS (where screenshots go), CHROMIUM (the
// browser, default /usr/bin/chromium), PROMO_CODE (a 10 % code the user may use once),
// EXPECT_REFRESH (set when access tokens live under 30 s: the app must have refreshed).
// The exercises phase needs an exercise `FizzBuzz` (tests of fizzbuzz(9), (30) and (7))
// seeded by an admin. Every page visited is checked with axe-core: no serious or critical
// violation.
import { AxeBuilder } from "@axe-core/playwright";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const phase = process.argv[2];
const base = process.env.BASE_URL ?? "http://127.0.0.1:5000";
const artifacts = process.env.ARTIFACTS ?? mkdtempSync(join(tmpdir(), "taproom-web-"));
const promo = process.env.PROMO_CODE ?? "TAPROOM-10";
const user = { username: "e2e_shopper", email: "shopper@example.com", password: "a long enough password" };
mkdirSync(artifacts, { recursive: true });

const results = [];
/** The page under test, for a screenshot when a step fails. */
let current = null;
async function step(name, run) {
  const started = Date.now();
  try {
    await run();
    results.push({ name, ok: true });
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    results.push({ name, ok: false });
    console.log(`FAIL ${name}: ${e?.stack ?? e}`);
    if (current) {
      const shot = join(artifacts, `${phase}-FAILED.png`);
      await current.screenshot({ path: shot, fullPage: true }).catch(() => {});
      console.log(`     the page then: ${shot}\n     its text: ${await current.locator("main").innerText().catch(() => "?")}`);
    }
    // Later steps build on this one.
    throw e;
  }
}

/** A screenshot of the whole page, and axe-core's verdict on it. */
async function check(page, name) {
  await page.screenshot({ path: join(artifacts, `${phase}-${name}.png`), fullPage: true });
  const { violations } = await new AxeBuilder({ page }).analyze();
  const serious = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(
    serious.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`),
    [],
    `accessibility violations on ${name}`,
  );
}

async function signIn(page, password = user.password) {
  await page.goto(`${base}/#/login`);
  await page.getByLabel("Username or email").fill(user.username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
}

async function shop(page) {
  await step("the page is served with a content security policy", async () => {
    const response = await page.goto(`${base}/`);
    assert.equal(response.status(), 200);
    assert.match(response.headers()["content-security-policy"] ?? "", /script-src 'self'/);
    await page.getByRole("heading", { name: "Beers", exact: true }).waitFor();
  });

  await step("a validation error is shown at its field", async () => {
    await page.getByRole("link", { name: "Sign in", exact: true }).click();
    await page.getByRole("link", { name: "Create an account", exact: true }).click();
    await page.getByLabel("Username").fill(user.username);
    await page.getByLabel("Email").fill("not an email");
    await page.getByLabel(/^Password/).fill("short");
    await page.getByRole("button", { name: "Create account", exact: true }).click();
    const email = page.getByLabel("Email");
    await page.locator("#register-email-error").waitFor();
    assert.equal(await email.getAttribute("aria-invalid"), "true");
    assert.equal(await email.getAttribute("aria-describedby"), "register-email-error");
    assert.match(await page.locator("#register-email-error").innerText(), /email/);
    assert.match(await page.locator("#register-password-error").innerText(), /8/);
    assert.equal(await page.locator("#register-username-error").count(), 0, "the username was fine");
    await page.getByRole("alert").filter({ hasText: "see `errors`" }).waitFor();
    await check(page, "register-validation");
  });

  await step("register and land on the catalogue", async () => {
    await page.getByLabel("Email").fill(user.email);
    await page.getByLabel(/^Password/).fill(user.password);
    await page.getByRole("button", { name: "Create account", exact: true }).click();
    await page.getByRole("heading", { name: "Beers", exact: true }).waitFor();
    await page.getByRole("button", { name: "Sign out", exact: true }).waitFor();
  });

  await step("browse the catalogue a page at a time, and search it", async () => {
    const beers = page.getByRole("list", { name: "Beers" }).getByRole("listitem");
    await beers.first().waitFor();
    assert.equal(await beers.count(), 10);
    await check(page, "catalogue");
    await page.getByRole("button", { name: "Next page", exact: true }).click();
    await page.getByText("Page 2").waitFor();
    await page.waitForFunction(() => document.querySelectorAll("ul[aria-label=Beers] > li").length === 2);
    await page.getByRole("button", { name: "Previous page", exact: true }).click();
    await page.getByText("Page 1").waitFor();
    await page.getByLabel("Search beers by name").fill("hoppy");
    await page.getByRole("button", { name: "Search", exact: true }).click();
    await page.waitForFunction(() => document.querySelectorAll("ul[aria-label=Beers] > li").length === 1);
    await page.getByRole("heading", { name: "Hoppy Days IPA", exact: true }).waitFor();
  });

  await step("fill the cart", async () => {
    await page.getByRole("button", { name: /^Add to cart\s*:\s*Hoppy Days IPA$/ }).click();
    await page.getByRole("status").filter({ hasText: "Hoppy Days IPA is in your cart." }).waitFor();
    await page.getByLabel("Search beers by name").fill("stout");
    await page.getByRole("button", { name: "Search", exact: true }).click();
    await page.getByRole("button", { name: /^Add to cart\s*:\s*Midnight Stout$/ }).click();
    await page.getByRole("status").filter({ hasText: "Midnight Stout is in your cart." }).waitFor();
    await page.getByRole("link", { name: "Cart", exact: true }).click();
    await page.getByRole("table", { name: "Your cart" }).waitFor();
    assert.equal(await page.getByTestId("subtotal").innerText(), "10.00");
    await check(page, "cart");
  });

  await step("a malformed promo code is refused at its field", async () => {
    await page.getByLabel("Promo code (optional)").fill("not a code!");
    await page.getByRole("button", { name: "Check out", exact: true }).click();
    await page.locator("#checkout-promo_code-error").waitFor();
    assert.equal(await page.getByLabel("Promo code (optional)").getAttribute("aria-invalid"), "true");
    await check(page, "cart-invalid-promo");
  });

  await step("check out with the promo code and see the discount", async () => {
    await page.getByLabel("Promo code (optional)").fill(promo);
    await page.getByRole("button", { name: "Check out", exact: true }).click();
    await page.getByRole("heading", { name: "Thank you! Your order is placed.", exact: true }).waitFor();
    assert.equal(await page.getByTestId("discount").innerText(), "1.00");
    assert.equal(await page.getByTestId("total").innerText(), "9.00");
    await check(page, "checkout-done");
  });

  await step("the order is in the history", async () => {
    await page.getByRole("link", { name: "See your orders", exact: true }).click();
    const orders = page.getByRole("list", { name: "Your orders" }).getByRole("listitem");
    await orders.first().waitFor();
    assert.equal(await orders.count(), 1);
    const text = await orders.first().innerText();
    assert.match(text, new RegExp(promo));
    assert.match(text, /9\.00/);
    await check(page, "orders");
  });

  await step("to-dos: add, complete, filter, delete", async () => {
    await page.getByRole("link", { name: "To-dos", exact: true }).click();
    await page.getByRole("heading", { name: "To-dos", exact: true }).waitFor();
    // An empty title is refused by the service, at the field.
    await page.getByRole("button", { name: "Add", exact: true }).click();
    await page.locator("#todo-title-error").waitFor();
    for (const title of ["Buy hops", "Clean the lines"]) {
      await page.getByLabel("New to-do").fill(title);
      await page.getByRole("button", { name: "Add", exact: true }).click();
      await page.getByRole("checkbox", { name: title, exact: true }).waitFor();
    }
    assert.equal(await page.locator("#todo-title-error").count(), 0);
    const items = page.getByRole("list", { name: "To-dos" }).getByRole("listitem");
    assert.equal(await items.count(), 2);
    await page.getByRole("checkbox", { name: "Buy hops" }).check();
    await page.waitForFunction(() => document.querySelector("ul[aria-label=To-dos] li.done") !== null);
    await page.getByRole("radio", { name: "Done", exact: true }).check();
    await page.waitForFunction(() => document.querySelectorAll("ul[aria-label=To-dos] li").length === 1);
    assert.match(await items.first().innerText(), /Buy hops/);
    await page.getByRole("radio", { name: "Not done", exact: true }).check();
    await page.getByRole("checkbox", { name: "Clean the lines", exact: true }).waitFor();
    assert.equal(await items.count(), 1);
    await check(page, "todos");
    await page.getByRole("button", { name: "Delete Clean the lines", exact: true }).click();
    await page.getByText("Nothing to show.").waitFor();
    await page.getByRole("radio", { name: "All", exact: true }).check();
    await page.waitForFunction(() => document.querySelectorAll("ul[aria-label=To-dos] li").length === 1);
  });

  await step("a wrong password is refused with the problem's detail, using the keyboard", async () => {
    await page.getByRole("button", { name: "Sign out", exact: true }).click();
    await page.getByRole("heading", { name: "Sign in", exact: true }).waitFor();
    // Keyboard only: the skip link, the fields in order, Enter submits.
    // A fresh load: the first Tab reaches the skip link.
    await page.reload();
    await page.getByRole("heading", { name: "Sign in", exact: true }).waitFor();
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Skip to content");
    await page.getByLabel("Username or email").focus();
    await page.keyboard.type(user.username);
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement?.id), "login-password");
    await page.keyboard.type("not the password");
    await page.keyboard.press("Enter");
    const alert = page.getByRole("alert");
    await alert.waitFor();
    assert.match(await alert.innerText(), /Unauthorized/);
    await check(page, "login-wrong-password");
    await page.getByLabel("Password").fill(user.password);
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Beers", exact: true }).waitFor();
  });
}

// Checks 3 before 15: 30 comes out as `Fizz`, so test_fizzbuzz fails. Each line is its
// indentation depth and its text, typed with the editor's Tab.
const FIZZBUZZ_WRONG = [
  [0, "def fizzbuzz(n):"],
  [1, "print('checking', n)"],
  [1, "if n % 3 == 0:"],
  [2, "return 'Fizz'"],
  [1, "if n % 5 == 0:"],
  [2, "return 'Buzz'"],
  [1, "return str(n)"],
];
const FIZZBUZZ_RIGHT = `def fizzbuzz(n):
    if n % 15 == 0:
        return 'FizzBuzz'
    if n % 3 == 0:
        return 'Fizz'
    if n % 5 == 0:
        return 'Buzz'
    return str(n)
`;

/** Types code into the editor as a person would: Tab indents, lines end with Enter. */
async function typeCode(page, editor, lines) {
  await editor.fill("");
  await editor.focus();
  for (const [depth, text] of lines) {
    for (let i = 0; i < depth; i++) await page.keyboard.press("Tab");
    await page.keyboard.insertText(text);
    await page.keyboard.press("Enter");
  }
}

/** Submits the editor's code and waits for the grade. */
async function submitAndWait(page, status) {
  await page.getByRole("button", { name: "Submit", exact: true }).click();
  await page.getByRole("status").filter({ hasText: `Submission ${status}.` }).waitFor({ timeout: 60_000 });
}

async function exercises(page) {
  await step("sign in and open the exercise", async () => {
    await signIn(page);
    await page.getByRole("heading", { name: "Beers", exact: true }).waitFor();
    await page.getByRole("link", { name: "Exercises", exact: true }).click();
    const list = page.getByRole("list", { name: "Exercises" }).getByRole("listitem");
    await list.first().waitFor();
    await check(page, "exercises");
    await page.getByRole("link", { name: "FizzBuzz", exact: true }).click();
    await page.getByRole("heading", { name: "FizzBuzz", exact: true }).waitFor();
    // The statement's Markdown shows as text: its tag is not an element.
    assert.equal(await page.locator("main img").count(), 0, "the statement's <img> became an element");
    await page.getByText("<img src=x onerror=alert(1)>").waitFor();
    assert.equal(await page.locator(".statement code").first().innerText(), "fizzbuzz(n)");
    assert.equal(await page.getByLabel("Your solution").inputValue(), "def fizzbuzz(n):\n    return str(n)\n");
  });

  await step("the editor indents with Tab, and Escape then Tab leaves it", async () => {
    const editor = page.getByLabel("Your solution");
    await typeCode(page, editor, FIZZBUZZ_WRONG);
    assert.equal(await editor.inputValue(), `def fizzbuzz(n):
    print('checking', n)
    if n % 3 == 0:
        return 'Fizz'
    if n % 5 == 0:
        return 'Buzz'
    return str(n)
`);
    await page.keyboard.press("Escape");
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Submit");
  });

  await step("a wrong solution fails, with the failing test and the output", async () => {
    await submitAndWait(page, "failed");
    const tests = page.getByRole("table", { name: "Tests" });
    const failing = tests.getByRole("row").filter({ hasText: "test_fizzbuzz" });
    await failing.waitFor();
    assert.match(await failing.innerText(), /failed/);
    assert.match(await failing.innerText(), /Fizz/);
    assert.match(await tests.getByRole("row").filter({ hasText: "test_number" }).innerText(), /passed/);
    assert.match(await page.getByLabel("Output", { exact: true }).innerText(), /checking 30/);
    await check(page, "exercise-failed");
  });

  await step("a right solution passes", async () => {
    await page.getByLabel("Your solution").fill(FIZZBUZZ_RIGHT);
    await submitAndWait(page, "passed");
    const rows = page.getByRole("table", { name: "Tests" }).getByRole("row");
    // A header and three tests, all passed.
    assert.equal(await rows.count(), 4);
    assert.equal(await rows.filter({ hasText: "passed" }).count(), 3);
    // Both submissions are listed, newest first.
    const mine = page.getByRole("table", { name: "Your submissions" }).getByRole("row");
    await mine.nth(2).waitFor();
    assert.equal(await mine.count(), 3);
    assert.match(await mine.nth(1).innerText(), /passed/);
    assert.match(await mine.nth(2).innerText(), /failed/);
    await check(page, "exercise-passed");
  });

  await step("the score is in My scores", async () => {
    await page.getByRole("link", { name: "My scores", exact: true }).click();
    await page.getByRole("heading", { name: "My scores", exact: true }).waitFor();
    // Scores count the exercises service's events, delivered a moment later.
    const cells = page.getByRole("row").filter({ hasText: "FizzBuzz" }).getByRole("cell");
    const seen = async () => ((await cells.count()) ? await cells.allInnerTexts() : []);
    for (let i = 0; ; i++) {
      const [, best, , attempts] = await seen();
      if (best === "passed" && attempts === "2") break;
      assert.ok(i < 60, `no passed score after 2 attempts: ${await seen()}`);
      await page.waitForTimeout(500);
      await page.getByRole("button", { name: "Refresh", exact: true }).click();
    }
    assert.equal((await seen())[2], "3 of 3");
    await check(page, "scores");
  });

  await step("the exercise with its results fits a phone screen", async () => {
    const context = await page.context().browser().newContext({ viewport: { width: 375, height: 740 }, isMobile: true, hasTouch: true });
    const phone = await context.newPage();
    await signIn(phone);
    await phone.getByRole("heading", { name: "Beers", exact: true }).waitFor();
    await phone.goto(`${base}/#/exercises`);
    await phone.getByRole("link", { name: "FizzBuzz", exact: true }).click();
    await phone.getByRole("button", { name: /^Show/ }).first().click();
    await phone.getByRole("table", { name: "Tests" }).waitFor();
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the screen`);
    await check(phone, "exercise-phone");
    await context.close();
  });
}

async function outage(page) {
  await step("sign in again (a new tab's session)", async () => {
    await signIn(page);
    await page.getByRole("heading", { name: "Beers", exact: true }).waitFor();
  });

  await step("promotions stopped: checkout with a code shows the 503 as a message", async () => {
    await page.getByRole("button", { name: /^Add to cart\s*:\s*Hoppy Days IPA$/ }).click();
    await page.getByRole("status").filter({ hasText: "in your cart" }).waitFor();
    await page.getByRole("link", { name: "Cart", exact: true }).click();
    await page.getByLabel("Promo code (optional)").fill(promo);
    await page.getByRole("button", { name: "Check out", exact: true }).click();
    const alert = page.getByRole("alert");
    await alert.waitFor();
    const text = await alert.innerText();
    assert.match(text, /Service Unavailable/, text);
    assert.match(text, /promotions/i, text);
    // Still the cart, with its items, not a blank page.
    await page.getByRole("table", { name: "Your cart" }).waitFor();
    await check(page, "checkout-503");
  });

  for (const [service, link, shot] of [["tasks", "To-dos", "todos-503"], ["exercises", "Exercises", "exercises-503"]]) {
    await step(`${service} stopped: the ${link} page shows the gateway's 503`, async () => {
      await page.getByRole("link", { name: link, exact: true }).click();
      // The page before's alert can still be up for a moment after the click: wait for
      // this page's own (a missing one fails on the wait's timeout).
      const alert = page.getByRole("alert").filter({ hasText: new RegExp(`${service} service did not answer`) });
      await alert.waitFor();
      const text = await alert.innerText();
      assert.match(text, /Service Unavailable/, text);
      await check(page, shot);
    });
  }
}

async function phone(browser) {
  await step("the catalogue fits a phone screen", async () => {
    const context = await browser.newContext({ viewport: { width: 375, height: 740 }, isMobile: true, hasTouch: true });
    const page = await context.newPage();
    await page.goto(`${base}/#/beers`);
    await page.getByRole("list", { name: "Beers" }).waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the screen`);
    await check(page, "phone");
    await context.close();
  });
}

const phases = { shop, exercises, outage };
if (!phases[phase]) {
  console.error(`usage: node e2e/run.mjs ${Object.keys(phases).join("|")}`);
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
  ],
});
let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  current = page;
  page.setDefaultTimeout(15_000);
  const consoleErrors = [];
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  let refreshes = 0;
  page.on("request", (r) => {
    if (new URL(r.url()).pathname === "/v1/auth/refresh") refreshes += 1;
  });
  await phases[phase](page);
  if (phase === "shop") await phone(browser);
  if (process.env.EXPECT_REFRESH) {
    await step("short-lived access tokens were refreshed", async () => {
      console.log(`     ${refreshes} refreshes`);
      assert.ok(refreshes > 0, "no call to /v1/auth/refresh");
    });
  }
  assert.deepEqual(consoleErrors, [], "uncaught errors in the page");
} catch {
  failed = true;
} finally {
  await browser.close();
}
const passed = results.filter((r) => r.ok).length;
console.log(`screenshots: ${artifacts}`);
console.log(`web e2e ${phase}: ${passed} passed, ${results.length - passed + (failed && passed === results.length ? 1 : 0)} failed`);
process.exit(failed ? 1 : 0);
