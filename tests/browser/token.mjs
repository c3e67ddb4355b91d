// The token page in headless Chromium, as a person would use it: sign in, see the
// announcement on the home page, open Token from the navigation, make a token with a note, an
// expiry and only `access:servers` on oneself, read it (shown once), use it from a script
// against one's own server, see its "last used" on the page, revoke it, and see it refused.
//
//   node tests/browser/token.mjs BASE_URL USER PASSWORD ANNOUNCEMENT SCREENSHOT.png
//
// Prints "ok: ..." lines; exits 1 with the reason on failure. A screenshot is written either way.
import { chromium } from "playwright-core";

const [base, user, password, announcement, shot] = process.argv.slice(2);
if (!shot) {
  console.error("usage: node token.mjs BASE_URL USER PASSWORD ANNOUNCEMENT SCREENSHOT.png");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
let code = 0;
const status = async (token) =>
  (await fetch(`${base}/user/${user}/api/status`, { headers: { Authorization: `token ${token}` } })).status;
try {
  await page.goto(`${base}/hub/login`);
  await page.fill("input[name=username]", user);
  await page.fill("input[name=password]", password);
  await page.click("button[type=submit]");
  // The server starts from the spawn page; wait until JupyterLab is there.
  await page.waitForURL(new RegExp(`/user/${user}/`), { timeout: 90_000 });
  await page.goto(`${base}/hub/home`);
  const banner = (await page.locator("#announcement").innerText()).trim();
  if (banner !== announcement) throw new Error(`home page announcement: ${JSON.stringify(banner)}`);
  console.log("ok: the announcement is on the home page");

  await page.click("nav a[href='/hub/token']");
  await page.waitForURL(/\/hub\/token$/);
  await page.locator("#no-tokens").waitFor({ timeout: 10_000 });
  await page.fill("input[name=note]", "chromium script");
  await page.selectOption("select[name=expires_in]", "86400");
  await page.click("details summary");
  await page.check(`input[name=scopes][value='access:servers!user=${user}']`);
  await page.click("#new-token button[type=submit]");
  const token = (await page.locator("#token-value").innerText()).trim();
  if (!/^[0-9a-f]{48}$/.test(token)) throw new Error(`not a token: ${JSON.stringify(token)}`);
  const row = page.locator("#tokens tbody tr");
  if ((await row.count()) !== 1) throw new Error(`expected one token row, got ${await row.count()}`);
  const cells = await row.first().locator("td").allInnerTexts();
  if (cells[0] !== "chromium script" || cells[1] !== `access:servers!user=${user}` || cells[3] !== "never" || cells[4] === "never") {
    throw new Error(`token row: ${JSON.stringify(cells)}`);
  }
  console.log("ok: the token was made, shown once, listed with its note, scope and expiry");
  await page.goto(`${base}/hub/token`);
  if (await page.locator("#token-value").count()) throw new Error("the token is shown again");

  const used = await status(token);
  if (used !== 200) throw new Error(`the token on /user/${user}/api/status: ${used}`);
  await page.reload();
  const lastUsed = (await page.locator("#tokens tbody tr td").nth(3).innerText()).trim();
  if (lastUsed === "never") throw new Error("last used is still never after a use");
  console.log(`ok: the token reached the server (200); last used ${lastUsed}`);

  await page.click("#tokens tbody tr form button");
  await page.locator("#no-tokens").waitFor({ timeout: 10_000 });
  const after = await status(token);
  if (after !== 403) throw new Error(`a revoked token got ${after}`);
  console.log("ok: revoked on the page, then refused (403)");
} catch (e) {
  console.error(`browser test failed at ${page.url()}: ${e.message}`);
  code = 1;
} finally {
  await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
  await browser.close();
}
process.exit(code);
