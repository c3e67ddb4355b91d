// Single sign-on in Debian's headless Chromium: with a Kerberos ticket in KRB5CCNAME the hub's
// `401 WWW-Authenticate: Negotiate` is answered by the browser and the user lands in
// JupyterLab without typing anything; without a ticket the same page shows the password form,
// and signing in with it works. Exits 0 on success, 1 with the reason otherwise; a screenshot is
// written either way.
//
//   KRB5CCNAME=FILE:... KRB5_CONFIG=... node tests/browser/spnego.mjs ticket   BASE USER SCREENSHOT.png
//   KRB5CCNAME=FILE:/nonexistent ...   node tests/browser/spnego.mjs password BASE USER SCREENSHOT.png PASSWORD
//
// Chromium answers Negotiate only for hosts in its AuthServerAllowlist policy (or the
// --auth-server-allowlist switch) and delegates the ticket only to hosts in the
// AuthNegotiateDelegateAllowlist policy, which has no command-line switch any more. The test
// that runs this script writes both to /etc/chromium/policies/managed/, as a site's desktop
// management would, and removes the file afterwards. Used by the end-to-end test
// `spnego_single_sign_on_in_chromium`.
import { chromium } from "playwright-core";

const [mode, base, user, shot, password] = process.argv.slice(2);
if (!["ticket", "password"].includes(mode) || !base || !user || !shot || (mode === "password" && !password)) {
  console.error("usage: node spnego.mjs ticket|password BASE_URL USER SCREENSHOT.png [PASSWORD]");
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
const onLogin = () => new URL(page.url()).pathname === "/hub/login";

// Chromium applies its HTTP authentication policy to its network service a moment after
// start-up; a
// Negotiate challenge that arrives before then is refused inside the browser
// (AUTH_HANDLER_CREATE_RESULT net_error -339 in its net log) and the page shows the 401 body.
// A person's browser has been running for a while; here the first visits may come too early,
// so the page is visited until the browser has answered the challenge (ticket) or has had
// several chances to (no ticket).
async function visitLogin(tries) {
  for (let i = 1; i <= tries; i++) {
    await page.goto(`${base}/hub/login`);
    if (!onLogin()) return i;
    await page.waitForTimeout(500);
  }
  return 0;
}

let code = 0;
try {
  if (mode === "ticket") {
    const tries = await visitLogin(20);
    if (!tries) throw new Error("Chromium never answered the Negotiate challenge; still on the password form");
    await page.waitForURL(new RegExp(`/user/${user}/lab`), { timeout: 90_000 });
    await page.locator(".jp-LabShell, #jp-main-dock-panel").first().waitFor({ timeout: 60_000 });
    console.log(`ok: single sign-on as ${user} (visit ${tries}), JupyterLab opened at ${page.url()}`);
  } else {
    if (await visitLogin(4)) throw new Error(`signed in without a ticket or password, at ${page.url()}`);
    await page.fill("input[name=username]", user);
    await page.fill("input[name=password]", password);
    await page.click("button[type=submit]");
    await page.waitForURL(new RegExp(`/user/${user}/lab`), { timeout: 90_000 });
    console.log(`ok: no ticket, the password form was shown, and ${user} signed in with it`);
  }
} catch (e) {
  console.error(`browser test failed at ${page.url()}: ${e.message}`);
  code = 1;
} finally {
  await page.screenshot({ path: shot }).catch(() => {});
  await browser.close();
}
process.exit(code);
