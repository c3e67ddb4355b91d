// The Jobs page in Debian's headless Chromium, as a data scientist would use it: create a job
// from a notebook in the home, "Run now", watch the run go to succeeded, then open its output
// notebook in JupyterLab. Exits 0 on success; on failure prints why and exits 1. A screenshot
// of the job's page is written either way.
//
//   node tests/browser/jobs.mjs BASE USER PASSWORD NOTEBOOK SHOT_PREFIX
//
// NOTEBOOK is relative to USER's home. Used by the end-to-end test `jobs_page_in_chromium`.
import { chromium } from "playwright-core";

const [base, user, pw, notebook, shots] = process.argv.slice(2);
if (!shots) {
  console.error("usage: node jobs.mjs BASE USER PASSWORD NOTEBOOK SHOT_PREFIX");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const step = (s) => console.log(`step: ${s}`);
let code = 0;
const page = await browser.newPage({ viewport: { width: 1300, height: 900 } });
try {
  step("sign in from the Jobs page's address");
  await page.goto(`${base}/hub/jobs`);
  await page.waitForURL(/\/hub\/login/);
  await page.fill("input[name=username]", user);
  await page.fill("input[name=password]", pw);
  await page.click("button[type=submit]");
  await page.waitForURL(`${base}/hub/jobs`);
  await page.getByText("You have no jobs yet").waitFor();

  step("create a job with a parameter");
  await page.fill("form.job-form input[name=name]", "browser-report");
  await page.fill("form.job-form input[name=notebook]", notebook);
  await page.fill("form.job-form textarea[name=parameters]", "greeting=hello from the browser");
  await page.click("form.job-form button:has-text('Create job')");
  await page.waitForURL(`${base}/hub/jobs/browser-report`);
  await page.getByText("No runs yet.").waitFor();

  step("run it now and watch it go to succeeded");
  await page.click("#run-now");
  await page.waitForURL(`${base}/hub/jobs/browser-report`);
  // The page refreshes itself while a run is queued or running.
  await page.waitForSelector("tr[data-run] .state[data-state=succeeded]", { timeout: 120_000 });
  await page.screenshot({ path: `${shots}-job.png`, fullPage: true });

  step("the run's log and the download are there");
  const row = page.locator("tr[data-run]").first();
  if (!(await row.locator("a", { hasText: "Log" }).count())) throw new Error("no Log link");
  if (!(await row.locator("a", { hasText: "Download" }).count())) throw new Error("no Download link");

  step("open the output notebook in JupyterLab (the server starts)");
  const [lab] = await Promise.all([
    page.context().waitForEvent("page"),
    row.locator("a", { hasText: "Open in JupyterLab" }).click(),
  ]);
  await lab.waitForURL(/\/user\/[^/]+\/lab\/tree\/notebook-runs\/browser-report\//, { timeout: 120_000 });
  // The output cell with the injected parameter's value, rendered by JupyterLab.
  await lab.getByText("hello from the browser").first().waitFor({ timeout: 120_000 });
  await lab.screenshot({ path: `${shots}-lab.png` });
  step("done");
} catch (e) {
  code = 1;
  console.error(`FAILED: ${e.stack || e}`);
  await page.screenshot({ path: `${shots}-job.png`, fullPage: true }).catch(() => {});
}
await browser.close();
process.exit(code);
