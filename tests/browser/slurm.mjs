// The spawn page while a Slurm job waits in the queue: sign in with the form, let the spawn
// page follow the progress events, and wait until it shows Slurm's reason (every node busy:
// "(Resources)"); then the home page shows the same and its Cancel button cancels the job.
// Prints "pending: <the spawn page's message>" and "cancelled: <the home page's state>". Exits
// 0 on success, 1 with the reason otherwise; a screenshot of the spawn page is written either way.
//
//   node tests/browser/slurm.mjs BASE_URL USER PASSWORD SCREENSHOT.png
//
// Used by the end-to-end test `chromium_shows_the_queue_and_runs_jupyterlab_on_a_node`.
import { chromium } from "playwright-core";

const [base, user, password, shot] = process.argv.slice(2);
if (!base || !user || !password || !shot) {
  console.error("usage: node slurm.mjs BASE_URL USER PASSWORD SCREENSHOT.png");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const page = await browser.newPage({ viewport: { width: 1100, height: 600 } });
let code = 0;
let shotTaken = false;
try {
  await page.goto(`${base}/hub/login`);
  await page.fill("input[name=username]", user);
  await page.fill("input[name=password]", password);
  await page.click("button[type=submit]");
  await page.waitForURL(/\/hub\/spawn/, { timeout: 30_000 });
  const msg = page.locator("#msg");
  await page.waitForFunction(() => document.getElementById("msg")?.textContent.includes("(Resources)"), null, {
    timeout: 60_000,
  });
  const text = (await msg.textContent()).trim();
  if (!/Slurm job \d+ is waiting in the queue: waiting for resources/.test(text)) throw new Error(`spawn page says ${text}`);
  const bar = Number(await page.locator("#bar").getAttribute("value"));
  if (!(bar > 0 && bar < 100)) throw new Error(`progress bar at ${bar}`);
  console.log(`pending: ${text}`);
  await page.screenshot({ path: shot, fullPage: true });
  shotTaken = true;

  await page.goto(`${base}/hub/home`);
  const state = page.locator("p.state").first();
  if (!(await state.textContent()).includes("(Resources)")) throw new Error(`home page says ${await state.textContent()}`);
  await page.locator("button", { hasText: "Cancel" }).click();
  await page.waitForURL(/\/hub\/home/);
  // The stop waits for Slurm to end the job; the page then offers a new start.
  await page.locator("button", { hasText: "Start my server" }).waitFor({ timeout: 60_000 });
  console.log(`cancelled: ${(await page.locator("p.state").first().textContent()).trim()}`);
} catch (e) {
  console.error(`browser test failed at ${page.url()}: ${e.message}`);
  code = 1;
} finally {
  if (!shotTaken) await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
  await browser.close();
}
process.exit(code);
