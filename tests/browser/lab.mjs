// Drives Debian's headless Chromium through the hub as a person would: sign in with the form,
// wait for JupyterLab, open a Python notebook from the launcher, run `1+1`, and check the
// output is 2. Then JupyterLab's Hub menu: File → "Hub Control Panel" opens /hub/home in a new
// tab, File → "Log Out" leads to the hub's sign-out, after which the old session cookie no
// longer opens a hub page. Exits 0 on success; on failure prints why and exits 1. Either way
// a screenshot is written.
//
//   node tests/browser/lab.mjs BASE_URL USER PASSWORD SCREENSHOT.png
//
// Used by the end-to-end test `browser_login_opens_lab_and_runs_a_cell`.
import { chromium } from "playwright-core";

const [base, user, password, shot] = process.argv.slice(2);
if (!base || !user || !password || !shot) {
  console.error("usage: node lab.mjs BASE_URL USER PASSWORD SCREENSHOT.png");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
let code = 0;
try {
  await page.goto(`${base}/hub/login`);
  await page.fill("input[name=username]", user);
  await page.fill("input[name=password]", password);
  await page.click("button[type=submit]");
  // The spawn page follows the progress events and then moves to JupyterLab.
  await page.waitForURL(new RegExp(`/user/${user}/lab`), { timeout: 90_000 });
  // A user who was here before gets their last workspace back; start from the launcher.
  await page.goto(`${base}/user/${user}/lab?reset`);
  const card = page.locator(".jp-LauncherCard[data-category='Notebook']").first();
  await card.waitFor({ timeout: 60_000 });
  await card.click();
  const editor = page.locator(".jp-NotebookPanel .jp-Cell .cm-content").first();
  await editor.waitFor({ timeout: 60_000 });
  // Wait until the kernel has connected through the hub's WebSocket tunnel and is idle.
  await page.locator(".jp-StatusBar-TextItem", { hasText: "| Idle" }).first().waitFor({ timeout: 60_000 });
  await editor.click();
  await page.keyboard.type("1+1");
  await page.keyboard.press("Shift+Enter");
  const result = page.locator(".jp-OutputArea-executeResult").first();
  await result.waitFor({ timeout: 60_000 });
  const text = (await result.innerText()).trim();
  if (!text.endsWith("2")) throw new Error(`expected the cell's output to be 2, got ${JSON.stringify(text)}`);
  console.log(`ok: signed in as ${user}, JupyterLab opened, 1+1 gave ${JSON.stringify(text)}`);

  // The Hub menu (@jupyterlab/hub-extension), from the page config the hub gives the server.
  const fileMenu = async () => {
    await page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", { hasText: /^File$/ }).click();
    return page.locator(".lm-Menu-content");
  };
  const menu = await fileMenu();
  const control = menu.locator(".lm-Menu-itemLabel", { hasText: /^Hub Control Panel$/ });
  await control.waitFor({ timeout: 10_000 });
  const [panel] = await Promise.all([page.context().waitForEvent("page"), control.click()]);
  await panel.waitForLoadState();
  if (!new URL(panel.url()).pathname.startsWith("/hub/home")) {
    throw new Error(`Hub Control Panel opened ${panel.url()}, not /hub/home`);
  }
  await panel.locator("h1, h2").first().waitFor({ timeout: 10_000 });
  await panel.close();
  console.log("ok: File → Hub Control Panel opened /hub/home");
  // Lumino keeps hidden items in the DOM with `lm-mod-hidden`; only visible ones count.
  const item = (label) => page.locator(".lm-Menu-content .lm-Menu-item:not(.lm-mod-hidden) .lm-Menu-itemLabel", { hasText: label });
  await fileMenu();
  await item(/^Hub Control Panel$/).waitFor({ timeout: 10_000 });
  if (await item(/^Shut Down$/).count()) {
    throw new Error("the Lab's own Shut Down is offered; the hub stops servers");
  }
  const cookies = await page.context().cookies();
  const logout = item(/^Log Out$/);
  if ((await logout.count()) !== 1) throw new Error(`expected one visible Log Out (the hub's), found ${await logout.count()}`);
  await logout.click();
  await page.waitForURL(/\/hub\/logout/, { timeout: 20_000 });
  await page.click("form[action='/hub/logout'] button");
  await page.waitForURL(/\/hub\/login/, { timeout: 20_000 });
  // The old cookie, replayed in a fresh context, no longer signs anyone in.
  const replay = await browser.newContext();
  await replay.addCookies(cookies);
  const again = await replay.newPage();
  await again.goto(`${base}/hub/home`);
  if (!new URL(again.url()).pathname.startsWith("/hub/login")) {
    throw new Error(`after Log Out the old cookie still opens ${again.url()}`);
  }
  await replay.close();
  console.log("ok: File → Log Out signed out of the hub; the old cookie is refused");
} catch (e) {
  console.error(`browser test failed at ${page.url()}: ${e.message}`);
  code = 1;
} finally {
  await page.screenshot({ path: shot }).catch(() => {});
  await browser.close();
}
process.exit(code);
