// Named servers and profiles on the home page in headless Chromium: sign in, create a named
// server with the "large" profile from the home page's form, follow its spawn page into
// JupyterLab at /user/USER/NAME/lab, then stop and delete it from the home page.
//
//   node tests/browser/named.mjs BASE_URL USER PASSWORD SERVER_NAME SCREENSHOT.png
//
// Prints "ok: ..." lines; exits 1 with the reason on failure. A screenshot is written either way.
import { chromium } from "playwright-core";

const [base, user, password, name, shot] = process.argv.slice(2);
if (!shot) {
  console.error("usage: node named.mjs BASE_URL USER PASSWORD SERVER_NAME SCREENSHOT.png");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
let code = 0;
try {
  await page.goto(`${base}/hub/login?next=${encodeURIComponent("/hub/home")}`);
  await page.fill("input[name=username]", user);
  await page.fill("input[name=password]", password);
  await page.click("button[type=submit]");
  await page.waitForURL(/\/hub\/home/);
  const form = page.locator("#new-server");
  await form.locator("input[name=server_name]").fill(name);
  await form.locator("select[name=profile]").selectOption("large");
  await form.locator("button").click();
  await page.waitForURL(new RegExp(`/user/${user}/${name}/lab`), { timeout: 90_000 });
  await page.locator(".jp-LauncherCard").first().waitFor({ timeout: 60_000 });
  console.log(`ok: created ${name} with the large profile from the home page; JupyterLab opened at ${new URL(page.url()).pathname}`);

  await page.goto(`${base}/hub/home`);
  const row = page.locator(`#named tr[data-server='${name}']`);
  if ((await row.getAttribute("data-state")) !== "running") throw new Error("the named server is not listed as running");
  await row.locator("button", { hasText: "Stop" }).click();
  await page.waitForURL(/\/hub\/home/);
  await page.locator(`#named tr[data-server='${name}'][data-state='stopped']`).waitFor({ timeout: 30_000 });
  await page.locator(`#named tr[data-server='${name}'] button`, { hasText: "Delete" }).click();
  await page.waitForURL(/\/hub\/home/);
  if (await page.locator(`#named tr[data-server='${name}']`).count()) throw new Error("deleted, but still listed");
  console.log("ok: stopped and deleted from the home page");
} catch (e) {
  console.error(`browser test failed at ${page.url()}: ${e.message}`);
  code = 1;
} finally {
  await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
  await browser.close();
}
process.exit(code);
