// End-to-end test of examples/pages-app in headless Chromium (Debian's `chromium`, driven by
// playwright-core). Starts the example the way `npm run example` does (on a free port, with a
// fresh state directory), then: signs up, logs in, sees two devices (two browser contexts), logs
// one out from the other, and checks the logged-out one is sent to the login page on its next
// navigation and on its next action. Also: an expired access token is refreshed transparently,
// CSRF checks hold, an authenticator app is set up from its QR page and then asked for at login,
// a passkey (Chromium's virtual authenticator, over the DevTools protocol) is added and signs in
// without a password, "Sign in with Test ID" goes through a fake OpenID provider
// (fake-oidc-provider.mjs) and back, and no token ever reaches page scripts. Screenshots go to
// test-results/e2e/.
//
//   npm run test:e2e        (CHROMIUM_PATH overrides /usr/bin/chromium)
import assert from "node:assert/strict";
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { decodeJwt, importJWK, SignJWT } from "jose";
import { chromium } from "playwright-core";
import { freePort, signalAll, startExample, stopAll } from "../examples/pages-app/run.mjs";
import { totpNow, wrongTotpCode } from "../test/node/totp.mjs";
import { startFakeProvider } from "./fake-oidc-provider.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const OUT = join(root, "test-results", "e2e");
/** user-registry's D1/KV/Durable Object state and the dev registry for this run (wiped before and after). */
const STATE = join(OUT, "state");
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
/** The whole file, servers included, ends by then whatever happens. */
const DEADLINE_MS = 5 * 60_000;

const ACCESS = "__Host-ur_at";
const REFRESH = "__Host-ur_rt";
const MFA = "__Host-ur_mfa";
const EMAIL = `ada-${Date.now().toString(36)}@example.com`;
const PASSWORD = "correct horse battery";
/** The fake provider's one user; a new account here, since no account has this email. */
const PROVIDER_USER = { sub: "e2e-grace", email: `grace-${Date.now().toString(36)}@example.com`, name: "Grace Hopper" };
const PROVIDER = { id: "testid", label: "Test ID", clientId: "pages-example", clientSecret: "e2e-client-secret" };

let app;
let provider;
let browser;
let log;
/** Bodies of every /api/ response the pages received, to check that no token is among them. */
const apiBodies = [];
const pageErrors = [];
/** The first step that failed; later steps are skipped rather than failing for the same reason. */
let broken = null;

async function cleanup() {
  const closing = browser?.close().catch(() => {});
  browser = undefined;
  await app?.stop();
  await provider?.stop();
  await stopAll();
  rmSync(STATE, { recursive: true, force: true });
  await Promise.race([closing, new Promise((r) => setTimeout(r, 5_000))]);
}

const watchdog = setTimeout(async () => {
  console.error(`e2e: still running after ${DEADLINE_MS / 1000} s; stopping everything`);
  await cleanup();
  process.exit(1);
}, DEADLINE_MS);
watchdog.unref();
// Killed from outside (Ctrl-C, CI's timeout): the servers get the signal at once, then the rest is
// cleaned up. The handler stays for repeated signals (node --test forwards the one it receives).
let interrupted = false;
for (const [signal, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
  ["SIGHUP", 129],
]) {
  process.on(signal, async () => {
    signalAll("SIGTERM");
    if (interrupted) return;
    interrupted = true;
    await cleanup();
    process.exit(code);
  });
}

/** A step of the scenario: skipped once an earlier one failed. */
function step(name, fn) {
  test(name, async (t) => {
    if (broken) return t.skip(`an earlier step failed: ${broken}`);
    try {
      await fn(t);
    } catch (e) {
      broken = name;
      throw e;
    }
  });
}

async function newDevice() {
  const context = await browser.newContext({ baseURL: app.url, viewport: { width: 1000, height: 760 } });
  context.setDefaultTimeout(15_000);
  context.setDefaultNavigationTimeout(20_000);
  const page = await context.newPage();
  watch(page);
  return { context, page };
}

function watch(page) {
  page.on("pageerror", (e) => pageErrors.push(`${page.url()}: ${e.message}`));
  page.on("response", async (res) => {
    if (!new URL(res.url()).pathname.startsWith("/api/")) return;
    try {
      apiBodies.push({ url: res.url(), body: await res.text() });
    } catch {
      // redirects and aborted requests have no body
    }
  });
}

const shot = (page, name) => page.screenshot({ path: join(OUT, `${name}.png`), fullPage: true });
const cookie = async (context, name) => (await context.cookies()).find((c) => c.name === name);

async function fillSignup(page, { name, email, password, confirmation }) {
  await page.fill("#full_name", name);
  await page.fill("#email", email);
  await page.fill("#password", password);
  await page.fill("#password_confirmation", confirmation);
  await page.click("button[type=submit]");
}

async function logIn(page, description, password = PASSWORD) {
  await page.fill("#email", EMAIL);
  await page.fill("#password", password);
  await page.fill("#description", description);
  await page.click("button[type=submit]");
}

/** Whether something on this machine listens on `port` now. */
const portTaken = (port) =>
  new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", (e) => resolve(e.code === "EADDRINUSE"));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(false)));
  });

/** `start(port)` on a free port; when it fails because the port was taken meanwhile, again on another (3 tries). */
async function onFreePort(start) {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      return await start(port);
    } catch (e) {
      if (attempt >= 3 || !(await portTaken(port))) throw e;
      console.log(`# port ${port} was taken before wrangler bound it; trying another`);
    }
  }
}

/** What the site's own session endpoint says of this browser's login (its amr). */
const sessionOf = (page) => page.evaluate(async () => (await fetch("/api/app/session")).json());

/** An access token like `token` (same claims, same key) that expired a minute ago. */
async function expiredCopy(token) {
  const devVars = readFileSync(join(root, ".dev.vars"), "utf8");
  const [jwk] = JSON.parse(/^JWT_PRIVATE_KEYS='?(\[.*\])'?$/m.exec(devVars)[1]);
  const key = await importJWK(jwk, "ES256");
  const now = Math.floor(Date.now() / 1000);
  const claims = { ...decodeJwt(token), iat: now - 1000, exp: now - 60 };
  return new SignJWT(claims).setProtectedHeader({ alg: "ES256", kid: jwk.kid, typ: "at+jwt" }).sign(key);
}

describe("pages-app in headless Chromium", { timeout: DEADLINE_MS - 30_000 }, () => {
  let a; // the first device ("Laptop")
  let b; // the second device ("Phone")

  before(
    async () => {
      assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (apt-get install chromium)`);
      mkdirSync(OUT, { recursive: true });
      log = createWriteStream(join(OUT, "server.log"));
      rmSync(STATE, { recursive: true, force: true });
      // freePort() only finds a port free now; wrangler binds it later, and another process may take
      // it meanwhile. Then wrangler exits (EADDRINUSE) and the run tries another port.
      let site;
      app = await onFreePort(async (port) => {
        // WebAuthn takes no IP address as RP ID: the site is http://localhost:<port>, the RP ID localhost.
        site = `http://localhost:${port}`;
        provider ??= await startFakeProvider({
          clientId: PROVIDER.clientId,
          clientSecret: PROVIDER.clientSecret,
          user: PROVIDER_USER,
        });
        // The registry has no address of its own here: its ISSUER is the site, whose
        // functions/v1/oauth/[[path]].ts forwards the provider's callback over the binding.
        provider.register(`${site}/v1/oauth/${PROVIDER.id}/callback`);
        return startExample({
          port,
          persistTo: join(STATE, "wrangler"),
          output: log,
          // A dev registry of its own, so a `wrangler dev` running elsewhere on the machine is not involved.
          env: { WRANGLER_REGISTRY_PATH: join(STATE, "registry") },
          registryVars: {
            ISSUER: site,
            WEBAUTHN_RP_ID: "localhost",
            WEBAUTHN_ORIGINS: site,
            OIDC_PROVIDERS: JSON.stringify([
              { id: PROVIDER.id, issuer: provider.issuer, client_ids: [PROVIDER.clientId] },
            ]),
            OIDC_CLIENT_SECRETS: JSON.stringify({ [PROVIDER.id]: PROVIDER.clientSecret }),
            OAUTH_REDIRECT_URIS: `${site}/oauth`,
          },
          siteVars: { SIGN_IN_PROVIDERS: `${PROVIDER.id}=${PROVIDER.label}` },
        });
      });
      assert.equal(app.url, site);
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: CHROMIUM_ARGS,
        headless: true,
        timeout: 60_000,
      });
    },
    { timeout: 180_000 },
  );

  after(async () => {
    await cleanup();
    log?.end();
    clearTimeout(watchdog);
  });

  step("sign up: problems are explained in plain words, then the account is created", async () => {
    a = await newDevice();
    await a.page.goto("/signup");
    await fillSignup(a.page, { name: "", email: "not-an-email", password: "short", confirmation: "other" });
    const alert = a.page.locator("#signup [role=alert]");
    await alert.waitFor();
    assert.equal(await alert.textContent(), "Some of the details need another look.");
    assert.equal(await a.page.textContent("[data-error-for=password]"), "Use a password of 8 to 128 characters.");
    assert.equal(
      await a.page.textContent("[data-error-for=email]"),
      "Enter a valid email address, like name@example.com.",
    );
    assert.equal(await a.page.textContent("[data-error-for=password_confirmation]"), "The two passwords don't match.");
    assert.doesNotMatch(await a.page.textContent("main"), /[{}]|validation_failed/);
    await shot(a.page, "signup");

    await fillSignup(a.page, { name: "Ada Lovelace", email: EMAIL, password: PASSWORD, confirmation: PASSWORD });
    await a.page.waitForURL(/\/login\?reason=signed_up$/);
    assert.equal(await a.page.textContent("#notice"), "Your account is ready. Log in to continue.");
    assert.equal(await a.page.inputValue("#email"), EMAIL);
  });

  step("log in: a wrong password is explained in plain words; the right one opens the profile", async () => {
    await a.page.fill("#password", "not the password");
    await a.page.click("button[type=submit]");
    const alert = a.page.locator("#login [role=alert]");
    await alert.waitFor();
    assert.equal(
      await alert.textContent(),
      "That email and password don't match an account. Check them and try again.",
    );
    await shot(a.page, "login");

    await logIn(a.page, "Laptop");
    await a.page.waitForURL(/\/profile$/);
    await a.page.locator("#profile [data-field=email]").filter({ hasText: EMAIL }).waitFor();
    assert.equal(await a.page.textContent("#profile [data-field=full_name]"), "Ada Lovelace");
    await a.page.locator("#session [data-field=fresh]").filter({ hasText: "Yes" }).waitFor();
    await shot(a.page, "profile");

    for (const name of [ACCESS, REFRESH]) {
      const c = await cookie(a.context, name);
      assert.ok(c, `${name} is set`);
      assert.equal(c.httpOnly, true, `${name} is HttpOnly`);
      assert.equal(c.secure, true, `${name} is Secure`);
      assert.equal(c.sameSite, "Strict", `${name} is SameSite=Strict`);
    }
    const visible = await a.page.evaluate(() => document.cookie);
    assert.doesNotMatch(visible, /ur_at|ur_rt|eyJ|rt1\./, "page scripts cannot read the tokens");
  });

  step("a second browser is a second device; both see two devices", async () => {
    b = await newDevice();
    await b.page.goto("/signup");
    await fillSignup(b.page, { name: "Ada again", email: EMAIL, password: PASSWORD, confirmation: PASSWORD });
    const alert = b.page.locator("#signup [role=alert]");
    await alert.waitFor();
    assert.equal(await alert.textContent(), "There is already an account with this email. Log in instead.");

    await b.page.goto("/login");
    await logIn(b.page, "Phone");
    await b.page.waitForURL(/\/profile$/);
    await b.page.click("nav >> text=Devices");
    await b.page.waitForURL(/\/devices$/);
    await b.page.locator("li.device").nth(1).waitFor();
    assert.equal(await b.page.locator("li.device").count(), 2);
    assert.equal(await b.page.textContent("li.device.current [data-field=description]"), "Phone");

    await a.page.goto("/devices");
    await a.page.locator("li.device").nth(1).waitFor();
    assert.equal(await a.page.locator("li.device").count(), 2);
    assert.equal(await a.page.textContent("li.device.current [data-field=description]"), "Laptop");
    await shot(a.page, "devices");
  });

  step("the first device logs the second one out", async () => {
    const phone = a.page.locator("li.device", {
      has: a.page.locator("[data-field=description]", { hasText: "Phone" }),
    });
    await phone.locator("button", { hasText: "Log out this device" }).click();
    await a.page.waitForFunction(() => document.querySelectorAll("li.device").length === 1);
    assert.equal(await a.page.textContent("li.device [data-field=description]"), "Laptop");
  });

  step("the logged-out device is sent to the login page on its next action and navigation", async () => {
    const stale = await b.context.cookies(); // what the phone still holds

    // Action: the phone's devices page is still open; its next API call is refused and the page
    // goes to the login page, saying why.
    await b.page.click("#reload");
    await b.page.waitForURL(/\/login\?next=%2Fdevices&reason=/);
    assert.match(await b.page.textContent("#notice"), /logged out of this device/);
    assert.equal(await cookie(b.context, ACCESS), undefined, "the access cookie is cleared");
    assert.equal(await cookie(b.context, REFRESH), undefined, "the refresh cookie is cleared");
    await shot(b.page, "logged-out-device");

    // Navigation, with the stale cookies put back: the page guard (strict verify) redirects.
    await b.context.addCookies(stale);
    const res = await b.page.goto("/profile");
    assert.ok(res.request().redirectedFrom(), "the server redirected before serving the page");
    await b.page.waitForURL(/\/login\?next=%2Fprofile&reason=/);
    assert.match(await b.page.textContent("#notice"), /logged out of this device/);
    assert.equal(await cookie(b.context, REFRESH), undefined, "the refresh cookie is cleared again");
  });

  step("an expired access token is refreshed once, transparently", async () => {
    const before = await cookie(a.context, ACCESS);
    const refreshBefore = await cookie(a.context, REFRESH);
    const expired = await expiredCopy(before.value);
    const plant = () =>
      a.context.addCookies([{ ...before, value: expired, expires: Math.floor(Date.now() / 1000) + 3600 }]);

    // A navigation: the page guard's verify says token_expired, the refresh cookie buys a new pair.
    await plant();
    await a.page.goto("/profile");
    assert.match(a.page.url(), /\/profile$/);
    await a.page.locator("#session [data-field=fresh]").filter({ hasText: "renewed automatically" }).waitFor();
    const renewed = await cookie(a.context, ACCESS);
    assert.notEqual(renewed.value, expired);
    assert.notEqual((await cookie(a.context, REFRESH)).value, refreshBefore.value, "the refresh token rotated");

    // An API call: user-registry answers 401 token_expired, the Function refreshes and retries once.
    await plant();
    const status = await a.page.evaluate(async () => (await fetch("/api/auth/users/me")).status);
    assert.equal(status, 200);
    assert.notEqual((await cookie(a.context, ACCESS)).value, expired);
  });

  step("state-changing requests need the CSRF token and this site's Origin", async () => {
    const noToken = await a.page.evaluate(async () => {
      const res = await fetch("/api/auth/logout", { method: "POST", headers: { "content-type": "application/json" } });
      return { status: res.status, body: await res.json() };
    });
    assert.equal(noToken.status, 403);
    assert.equal(noToken.body.error.code, "csrf_failed");

    const cookies = await a.context.cookies();
    const header = cookies.map((c) => `${c.name}=${c.value}`).join("; ");
    const csrf = cookies.find((c) => c.name === "__Host-ur_csrf").value;
    const foreign = await fetch(`${app.url}/api/auth/logout`, {
      method: "POST",
      headers: {
        cookie: header,
        origin: "http://evil.example",
        "x-csrf-token": csrf,
        "content-type": "application/json",
      },
    });
    assert.equal(foreign.status, 403);

    const still = await a.page.evaluate(async () => (await fetch("/api/auth/users/me")).status);
    assert.equal(still, 200, "the session survived both attempts");
  });

  step("log out ends the session in this browser", async () => {
    await a.page.goto("/profile");
    await a.page.click("#logout");
    await a.page.waitForURL(/\/login\?reason=logged_out$/);
    assert.equal(await a.page.textContent("#notice"), "You have logged out.");
    await a.page.goto("/devices");
    await a.page.waitForURL(/\/login\?next=%2Fdevices$/);
  });

  let c; // a third browser ("Desk"): the authenticator app and the passkey
  let totpSecret;

  step("authenticator app: set up from the QR page, then a password login asks for its code", async () => {
    c = await newDevice();
    await c.page.goto("/login");
    await logIn(c.page, "Desk");
    await c.page.waitForURL(/\/profile$/);
    await c.page.click("nav >> text=Security");
    await c.page.waitForURL(/\/security$/);
    await c.page.click("#totp-start");
    await c.page.locator("#totp-enrol").waitFor();
    // The QR code is an SVG drawn on the page from the otpauth:// URI, and it rendered.
    await c.page.waitForFunction(() => {
      const img = document.getElementById("totp-qr");
      return img.src.startsWith("data:image/svg+xml") && img.complete && img.naturalWidth > 0;
    });
    const qr = decodeURIComponent(await c.page.getAttribute("#totp-qr", "src"));
    assert.match(qr, /<svg [^>]*viewBox="0 0 \d+ \d+"/);
    totpSecret = (await c.page.textContent("#totp-secret")).replace(/\s/g, "");
    assert.match(totpSecret, /^[A-Z2-7]{16,}$/, "the secret is shown as base32 text too");
    await shot(c.page, "security-totp-qr");

    // A wrong first code is refused in words; a right one turns it on (the login below uses a
    // later step's: each code works once).
    await c.page.fill("#totp-code", wrongTotpCode(totpSecret));
    await c.page.click("#totp-confirm button[type=submit]");
    await c.page.locator("#totp-confirm [role=alert]").filter({ hasText: "didn't work" }).waitFor();
    const enrolled = await totpNow(totpSecret);
    await c.page.fill("#totp-code", enrolled.code);
    await c.page.click("#totp-confirm button[type=submit]");
    await c.page.locator("#recovery-codes li").nth(9).waitFor();
    assert.equal(await c.page.locator("#recovery-codes li").count(), 10, "10 recovery codes, shown once");
    assert.ok(await c.page.isVisible("#totp-remove"));
    await c.page.locator("#recovery-left").filter({ hasText: "10 of 10 recovery codes left." }).waitFor();
    await shot(c.page, "security-recovery-codes");

    await c.page.click("#logout");
    await c.page.waitForURL(/\/login\?reason=logged_out$/);
    await logIn(c.page, "Desk");
    await c.page.locator("#mfa").waitFor();
    assert.equal(await c.page.isVisible("#login"), false, "the password form gives way to the code prompt");
    assert.equal(await cookie(c.context, ACCESS), undefined, "no session before the second step");
    const mfaCookie = await cookie(c.context, MFA);
    assert.equal(mfaCookie?.httpOnly, true, "the first step's mfa_token stays in an HttpOnly cookie");
    assert.equal(mfaCookie.sameSite, "Strict");
    assert.equal(mfaCookie.secure, true);
    const lifetime = mfaCookie.expires - Date.now() / 1000;
    assert.ok(lifetime > 0 && lifetime <= 300, `the mfa cookie lives at most 300 s (${lifetime} s)`);
    await c.page.fill("#mfa-code", wrongTotpCode(totpSecret));
    await c.page.click("#mfa button[type=submit]");
    await c.page.locator("#mfa [role=alert]").filter({ hasText: "didn't work" }).waitFor();
    await shot(c.page, "login-mfa");
    await c.page.fill("#mfa-code", (await totpNow(totpSecret, { after: enrolled.step })).code);
    await c.page.click("#mfa button[type=submit]");
    await c.page.waitForURL(/\/profile$/);
    await c.page.locator("#profile [data-field=email]").filter({ hasText: EMAIL }).waitFor();
    assert.deepEqual((await sessionOf(c.page)).amr, ["pwd", "otp", "mfa"]);
    assert.equal(await cookie(c.context, MFA), undefined, "the spent mfa_token is forgotten");
  });

  step("passkey: added with Chromium's virtual authenticator, then it signs in with no password typed", async () => {
    const cdp = await c.context.newCDPSession(c.page);
    await cdp.send("WebAuthn.enable");
    const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
      options: {
        protocol: "ctap2",
        transport: "internal",
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
      },
    });

    await c.page.goto("/security");
    await c.page.locator("#passkey-none").waitFor();
    await c.page.fill("#passkey-name", "Desk passkey");
    await c.page.click("#passkey-add button[type=submit]");
    await c.page.locator("li.passkey [data-field=name]").filter({ hasText: "Desk passkey" }).waitFor();
    const { credentials } = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
    assert.equal(credentials.length, 1);
    assert.equal(credentials[0].isResidentCredential, true, "a discoverable credential");
    assert.equal(credentials[0].rpId, "localhost");
    await shot(c.page, "security-passkey");

    await c.page.click("#logout");
    await c.page.waitForURL(/\/login\?reason=logged_out$/);
    assert.equal(await c.page.inputValue("#email"), "");
    assert.equal(await c.page.inputValue("#password"), "");
    await shot(c.page, "login-passkey");
    await c.page.click("#passkey-login");
    await c.page.waitForURL(/\/profile$/);
    await c.page.locator("#profile [data-field=email]").filter({ hasText: EMAIL }).waitFor();
    // With user verification a passkey is both factors: the authenticator app is not asked for.
    assert.deepEqual((await sessionOf(c.page)).amr, ["hwk", "mfa"]);
    await shot(c.page, "profile-passkey");
    const signed = (await cdp.send("WebAuthn.getCredentials", { authenticatorId })).credentials[0];
    assert.ok(signed.signCount >= 1, "the authenticator signed the login");

    // This login used no app code, yet the page knows the app is on (GET /v1/users/me/mfa).
    await c.page.goto("/security");
    await c.page.locator("#totp-remove").waitFor();
    assert.equal(await c.page.isVisible("#totp-start"), false);
    await c.page.locator("#recovery-left").filter({ hasText: "10 of 10 recovery codes left." }).waitFor();
    const key = c.page.locator("li.passkey");
    await key.locator("[data-field=last_used_at]").filter({ hasNotText: "never" }).waitFor();

    // A refreshed token is not fresh: removing is refused in words, and the button works again.
    const refreshed = await c.page.evaluate(async () => {
      const { api } = await import("/app.js");
      return (await api("POST", "/api/auth/tokens/refresh", {})).ok;
    });
    assert.equal(refreshed, true);
    await key.locator("button", { hasText: "Remove" }).click();
    await c.page.locator("#passkey-error").filter({ hasText: "log in again" }).waitFor();
    assert.equal(await key.locator("button", { hasText: "Remove" }).isEnabled(), true);

    // A first step's mfa_token does not outlive the session that follows, nor a logout.
    const other = await c.context.newPage();
    await other.goto("/login");
    await logIn(other, "Desk");
    await other.locator("#mfa").waitFor();
    assert.ok(await cookie(c.context, MFA), "the first step left its mfa_token");
    await other.close();
    await c.page.click("#logout");
    await c.page.waitForURL(/\/login\?reason=logged_out$/);
    assert.equal(await cookie(c.context, MFA), undefined, "logging out forgets a pending second step");
    await logIn(c.page, "Desk");
    await c.page.locator("#mfa").waitFor();
    assert.ok(await cookie(c.context, MFA));
    await c.page.goto("/login");
    await c.page.click("#passkey-login");
    await c.page.waitForURL(/\/profile$/);
    assert.equal(await cookie(c.context, MFA), undefined, "a new session forgets the pending second step");

    // The passkey session is fresh: the passkey and the app can be removed.
    await c.page.goto("/security");
    await key.locator("button", { hasText: "Remove" }).click();
    await c.page.locator("#passkey-none").waitFor();
    await c.page.click("#totp-remove");
    await c.page.locator("#totp-start").waitFor();
    await c.page.click("#logout");
    await c.page.waitForURL(/\/login\?reason=logged_out$/);
    await logIn(c.page, "Desk");
    await c.page.waitForURL(/\/profile$/, { timeout: 20_000 });
    assert.deepEqual((await sessionOf(c.page)).amr, ["pwd"], "without the app, the password alone signs in");
    await cdp.send("WebAuthn.removeVirtualAuthenticator", { authenticatorId });
  });

  step(
    "Sign in with Test ID: the web flow through the site and a fake OpenID provider, then with the app's code",
    async () => {
      const d = await newDevice();
      /** Where the registry sent the browser back to: /oauth?code=<one-time code>&state=… */
      let back = null;
      d.page.on("request", (req) => {
        // (then the site's /oauth Function sends it on to /oauth?signed_in=1, which is not this)
        const u = new URL(req.url());
        if (u.pathname === "/oauth" && u.searchParams.has("code") && req.isNavigationRequest()) back = u;
      });
      await d.page.goto("/login");
      await d.page.locator("#providers button", { hasText: `Sign in with ${PROVIDER.label}` }).click();
      await d.page.waitForURL((u) => u.href.startsWith(`${provider.issuer}/authorize?`));
      await d.page.locator("#approve").waitFor();
      await shot(d.page, "provider-consent");
      await d.page.click("#approve");
      await d.page.waitForURL(/\/profile$/);
      await d.page.locator("#profile [data-field=email]").filter({ hasText: PROVIDER_USER.email }).waitFor();
      assert.equal(await d.page.textContent("#profile [data-field=full_name]"), PROVIDER_USER.name);
      assert.deepEqual((await sessionOf(d.page)).amr, ["fed"]);
      await shot(d.page, "profile-provider");
      assert.deepEqual(provider.seen, { refused: [], issued: 1, consents: 1 });
      const identities = await d.page.evaluate(async () => (await fetch("/api/auth/users/me/identities")).json());
      assert.deepEqual(
        identities.identities.map((i) => [i.provider, i.subject, i.email]),
        [[PROVIDER.id, PROVIDER_USER.sub, PROVIDER_USER.email]],
      );
      const access = await cookie(d.context, ACCESS);
      assert.equal(access?.httpOnly, true, "the provider's sign-in ends in the same HttpOnly cookies");

      // The one-time code works once: replayed (say, from the browser history), it is refused.
      assert.ok(back?.searchParams.get("code"), "the registry came back with a one-time code");
      const replay = await d.page.evaluate(async (code) => {
        const csrf = document.cookie.match(/__Host-ur_csrf=([^;]+)/)[1];
        const res = await fetch("/api/auth/tokens/oauth", {
          method: "POST",
          headers: { "content-type": "application/json", "x-csrf-token": decodeURIComponent(csrf) },
          body: JSON.stringify({ code }),
        });
        return { status: res.status, code: (await res.json()).error.code };
      }, back.searchParams.get("code"));
      assert.deepEqual(replay, { status: 400, code: "invalid_code" });
      assert.equal(provider.seen.issued, 1, "the provider was not asked again");

      // The state was made by the site and checked by its /oauth Function against a cookie, which
      // is spent: a return this browser did not start (login CSRF) is refused, and no code is
      // swapped for it.
      assert.match(back.searchParams.get("state") ?? "", /^[A-Za-z0-9_-]{43}$/);
      assert.equal(await cookie(d.context, "__Host-ur_oauth"), undefined, "the state cookie is spent");
      await d.page.goto(`/oauth?code=${encodeURIComponent(back.searchParams.get("code"))}&state=forged`);
      await d.page.waitForURL(/\/oauth$/);
      await d.page.locator("#oauth [role=alert]").filter({ hasText: "not started here" }).waitFor();
      assert.equal(new URL(d.page.url()).search, "", "nothing of the round trip stays in the address bar");
      // Without any state, in a browser that has no session: refused the same way, and still no session.
      const stranger = await newDevice();
      await stranger.page.goto(`/oauth?code=${encodeURIComponent(back.searchParams.get("code"))}`);
      await stranger.page.locator("#oauth [role=alert]").filter({ hasText: "not started here" }).waitFor();
      assert.equal(await cookie(stranger.context, ACCESS), undefined, "a return without a state signs nobody in");
      assert.equal(await cookie(stranger.context, REFRESH), undefined);
      await stranger.context.close();

      // With an authenticator app on, the provider is the first step only: the login page then asks
      // for the app's code.
      await d.page.goto("/security");
      await d.page.click("#totp-start");
      await d.page.locator("#totp-enrol").waitFor();
      const secret = (await d.page.textContent("#totp-secret")).replace(/\s/g, "");
      const enrolled = await totpNow(secret);
      await d.page.fill("#totp-code", enrolled.code);
      await d.page.click("#totp-confirm button[type=submit]");
      await d.page.locator("#recovery-codes li").nth(9).waitFor();
      await d.page.click("#logout");
      await d.page.waitForURL(/\/login\?reason=logged_out$/);
      await d.page.locator("#providers button", { hasText: `Sign in with ${PROVIDER.label}` }).click();
      await d.page.waitForURL((u) => u.href.startsWith(`${provider.issuer}/authorize?`));
      await d.page.click("#approve");
      await d.page.waitForURL(/\/login\?step=mfa$/);
      await d.page.locator("#mfa").waitFor();
      assert.equal(await cookie(d.context, ACCESS), undefined, "no session before the second step");
      await d.page.fill("#mfa-code", (await totpNow(secret, { after: enrolled.step })).code);
      await d.page.click("#mfa button[type=submit]");
      await d.page.waitForURL(/\/profile$/);
      assert.deepEqual((await sessionOf(d.page)).amr, ["fed", "otp", "mfa"]);
      assert.equal(provider.seen.issued, 2);
    },
  );

  step("no token ever reached a page, and the pages ran without script errors", async () => {
    assert.ok(apiBodies.length > 10, "API responses were seen");
    for (const { url, body } of apiBodies) {
      assert.doesNotMatch(body, /access_token|refresh_token|rt1\.|eyJhbGci/, `${url} leaks a token`);
      assert.doesNotMatch(body, /mfa_token/, `${url} hands the page the second step's token`);
    }
    assert.deepEqual(pageErrors, []);
  });
});
