// The admin page and the home page in Debian's headless Chromium, as an admin and a user
// would use them. Exits 0 on success; on failure prints why and exits 1. Screenshots of the
// admin page and of the user's home page are written either way.
//
//   node tests/browser/admin.mjs BASE ADMIN ADMIN_PW BOB BOB_PW CAROL TOTAL SHOT_PREFIX
//
// ADMIN is in admin_users; BOB is a hub user with a keytab; CAROL has a Linux account but is
// not a hub user yet; TOTAL is how many hub users exist at the start (more than one page).
// Used by the end-to-end test `admin_page_in_chromium`.
import { chromium } from "playwright-core";

const [base, admin, adminPw, bob, bobPw, carol, total, shots] = process.argv.slice(2);
if (!shots) {
  console.error("usage: node admin.mjs BASE ADMIN ADMIN_PW BOB BOB_PW CAROL TOTAL SHOT_PREFIX");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const step = (s) => console.log(`step: ${s}`);

async function signIn(page, user, pw, next) {
  await page.goto(`${base}${next}`);
  await page.waitForURL(/\/hub\/login/);
  await page.fill("input[name=username]", user);
  await page.fill("input[name=password]", pw);
  await page.click("button[type=submit]");
}

async function search(page, text) {
  await page.fill("#q", text);
  // Wait for a load after this search (the list marks each load with data-loaded).
  const before = await page.getAttribute("#admin", "data-loaded");
  await page.waitForFunction((b) => document.getElementById("admin").dataset.loaded !== b, before);
}

// Waits (up to 15 s) until the element's text matches `re`.
const expectText = async (locator, re, what) => {
  await locator.waitFor();
  const deadline = Date.now() + 15_000;
  for (;;) {
    const t = await locator.innerText();
    if (re.test(t)) return;
    if (Date.now() > deadline) throw new Error(`${what}: expected ${re}, got ${JSON.stringify(t)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

let code = 0;
const adminPage = await browser.newPage({ viewport: { width: 1400, height: 900 } });
const userPage = await browser.newPage({ viewport: { width: 1100, height: 800 } });
try {
  step("an admin signs in from the admin page's link and lands on it (no server started)");
  await signIn(adminPage, admin, adminPw, "/hub/admin");
  await adminPage.waitForURL(`${base}/hub/admin`);
  await adminPage.waitForSelector("#admin[data-loaded]");

  step("the user list is paged");
  await expectText(adminPage.locator("#range"), new RegExp(`^1–50 of ${total}$`), "first page");
  if ((await adminPage.locator("#users tbody tr").count()) !== 50) throw new Error("the first page has 50 rows");
  if (!(await adminPage.isDisabled("#prev"))) throw new Error("Previous is disabled on the first page");
  await adminPage.click("#next");
  await expectText(adminPage.locator("#range"), new RegExp(`^51–${total} of ${total}$`), "second page");
  if (!(await adminPage.isDisabled("#next"))) throw new Error("Next is disabled on the last page");

  step("search finds one user");
  await search(adminPage, bob);
  const bobRow = adminPage.locator(`tr[data-user="${bob}"]`);
  await bobRow.waitFor();
  if ((await adminPage.locator("#users tbody tr").count()) !== 1) throw new Error("the search shows only bob");
  if ((await bobRow.getAttribute("data-state")) !== "stopped") throw new Error("bob's server starts stopped");

  step("start bob's server from the admin page");
  await bobRow.locator("button", { hasText: "Start" }).click();
  await adminPage.waitForSelector(`tr[data-user="${bob}"][data-state="running"]`, { timeout: 90_000 });
  // The spawn ran kinit from bob's keytab: the ticket column says until when it is valid.
  const deadline = Date.now() + 20_000;
  while ((await bobRow.locator("td[data-ticket]").getAttribute("data-ticket")) !== "valid") {
    if (Date.now() > deadline) throw new Error(`bob's ticket never showed as valid: ${await bobRow.innerText()}`);
    await search(adminPage, bob + " ");
    await search(adminPage, bob);
  }
  await expectText(bobRow.locator("td[data-ticket]"), /^valid until \d{4}-\d\d-\d\d \d\d:\d\d UTC$/, "ticket cell");
  await expectText(bobRow.locator("td").nth(2), /just now|min ago/, "last activity");
  await adminPage.screenshot({ path: `${shots}-admin.png` });

  step("stop it again");
  await bobRow.locator("button", { hasText: "Stop" }).click();
  await adminPage.waitForSelector(`tr[data-user="${bob}"][data-state="stopped"]`, { timeout: 30_000 });

  step("add a user, and be told why a name without a Linux account is refused");
  await adminPage.fill("#names", carol);
  await adminPage.click("#add button");
  await expectText(adminPage.locator("#status"), new RegExp(`^Added ${carol}\\.$`), "add status");
  await adminPage.fill("#names", "nosuchaccount-x1");
  await adminPage.click("#add button");
  await adminPage.waitForSelector("#status.error");
  await expectText(adminPage.locator("#status"), /no Linux account named "nosuchaccount-x1"/, "refused add");

  step("delete the user after confirming");
  await search(adminPage, carol);
  const carolRow = adminPage.locator(`tr[data-user="${carol}"]`);
  await carolRow.waitFor();
  adminPage.once("dialog", (d) => d.accept());
  await carolRow.locator("button", { hasText: "Delete" }).click();
  await expectText(adminPage.locator("#status"), new RegExp(`^Deleted ${carol}\\.$`), "delete status");
  await carolRow.waitFor({ state: "detached" });
  // The admin cannot delete themself.
  await search(adminPage, admin);
  if (!(await adminPage.isDisabled(`tr[data-user="${admin}"] button:has-text("Delete")`))) {
    throw new Error("an admin's own Delete button is disabled");
  }

  step("a user who is not an admin is refused the admin page");
  await signIn(userPage, bob, bobPw, "/hub/admin");
  await userPage.waitForURL(`${base}/hub/admin`);
  await expectText(userPage.locator("main"), /Only admins can open the admin page/, "non-admin");

  step("the user's home page shows their server and their ticket");
  await userPage.goto(`${base}/hub/home`);
  if ((await userPage.getAttribute("#server", "data-state")) !== "stopped") throw new Error("home: server stopped");
  await expectText(userPage.locator("#ticket"), new RegExp(`Kerberos ticket for ${bob}@\\S+ valid until`), "home ticket");
  if (await userPage.locator("#admin-link").count()) throw new Error("no admin link for a non-admin");

  step("start from home: the progress bar moves, then JupyterLab opens");
  await userPage.click("#server button");
  await userPage.waitForURL(/\/hub\/spawn/);
  const seen = new Set();
  const spawnDeadline = Date.now() + 90_000;
  while (!/\/user\//.test(userPage.url())) {
    if (Date.now() > spawnDeadline) throw new Error(`the spawn page never moved on: ${await userPage.innerText("main")}`);
    const v = await userPage.evaluate(() => document.getElementById("bar")?.value).catch(() => undefined);
    if (typeof v === "number") seen.add(v);
    await userPage.waitForTimeout(50);
  }
  await userPage.waitForURL(new RegExp(`/user/${bob}/lab`), { timeout: 90_000 });
  const between = [...seen].filter((v) => v > 0 && v < 100);
  if (between.length === 0) throw new Error(`the progress bar never showed progress (values ${[...seen]})`);
  await userPage.goto(`${base}/hub/home`);
  if ((await userPage.getAttribute("#server", "data-state")) !== "running") throw new Error("home: server running");
  await expectText(userPage.locator("#server"), /Your server is running \(pid \d+\)/, "home server");
  await userPage.screenshot({ path: `${shots}-home.png` });
  console.log(`ok: admin page (paging, search, start/stop, ticket, add, delete, refusal) and home page; bar values ${[...seen].sort((a, b) => a - b)}`);
} catch (e) {
  console.error(`browser test failed: ${e.message}`);
  code = 1;
  await adminPage.screenshot({ path: `${shots}-admin.png` }).catch(() => {});
  await userPage.screenshot({ path: `${shots}-home.png` }).catch(() => {});
} finally {
  await browser.close();
}
process.exit(code);
