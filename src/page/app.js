// mfad's self-service page: a client of mfad's JSON API like any other. The access token
// lives in this closure only; the refresh token only in the HttpOnly cookie, so a reload
// signs in again silently through POST /api/auth/refresh. No framework, no build step.
"use strict";

// Where `rd` (the address forward-auth sends a person here from) may send them back to:
// its URL when it is an app's under `domain` (the session domain), or this page's own
// OpenID authorization (`here`, the page's origin: an app signing in with OpenID
// Connect), else null. Anyone
// can send a link to this page with an `rd` of their choosing, so every rule closes a
// known way for this check and the browser to disagree about the host (an open
// redirect): parsers that skip whitespace and controls, read "\" as "/", take a
// scheme-relative or scheme-only address, hide a host behind userinfo or
// percent-encoding, fold case or a trailing dot, or show another script's look-alike
// letters (IDN). Pure: the page's own state is not read.
function backTo(rd, domain, httpAllowed, here) {
  if (!rd) return null;
  if (!/^[\x21-\x7e]+$/.test(rd) || rd.includes("\\")) return null;
  const scheme = rd.startsWith("https://") ? "https://"
    : httpAllowed && rd.startsWith("http://") ? "http://" : null;
  if (!scheme) return null;
  let url;
  try { url = new URL(rd); } catch (e) { return null; }
  if (url.username || url.password) return null;
  // The authority as written is the host as parsed: nothing folded, decoded or added.
  if (rd.slice(scheme.length).split(/[/?#]/, 1)[0] !== url.host) return null;
  if (url.origin === here && url.pathname === "/oidc/authorize" && !url.hash) return url;
  if (!domain) return null;
  const host = url.hostname;
  if (host.endsWith(".")) return null;
  if (host !== domain && !host.endsWith("." + domain)) return null;
  return url;
}

(() => {
  const $ = (id) => document.getElementById(id);
  const service = $("service").textContent;
  const meta = (name) => document.querySelector("meta[name=" + name + "]").content;
  // The app that sent the person here, if it may be sent back to, and whether it asks
  // for a second factor (forward-auth's `need=2fa`).
  const params = new URLSearchParams(window.location.search);
  const back = backTo(params.get("rd"), meta("mfad-session-domain"), meta("mfad-http-back") === "yes",
    window.location.origin);
  const needSecond = back !== null && params.get("need") === "2fa";
  // An app of the OpenID provider asking for a new sign-in (`prompt=login`, `max_age`):
  // the login this browser has is not enough.
  const mustSignIn = back !== null && params.get("prompt") === "login";
  // What the person is sent on to, by name: the app's own for an OpenID authorization
  // (asked of the server, never taken from the address), else the host.
  let appName = null;
  const onwardName = () => appName || (back && back.hostname);
  let token = null;        // the access token, in memory only
  let challenge = null;    // the login's MFA challenge while the second step is shown
  let wrongAnswers = 0;    // wrong answers to that challenge (it takes 5)
  let setupWrong = 0;      // wrong codes since the set-up screen opened
  let confirmAction = null;
  let confirmOpener = null; // the button that opened the confirmation, for the focus after
  let method = null;       // the second step's chosen method
  let email = "";          // the signed-in account's, for the backup-codes file

  // Every sentence the page says, in one table: a translation is this table.
  const WORDS = {
    unreachable: "The server cannot be reached. Check your connection and try again.",
    failed: (status) => "Something went wrong (" + status + "). Try again in a moment.",
    enterBoth: "Enter your email and your password.",
    badLogin: "The email or password is not right.",
    wrongCode: "That code is not right.",
    wrongBackup: "That backup code is not right, or it was used already.",
    triesLeft: (n) => (n === 1 ? "1 try left." : n + " tries left."),
    clock: "If the app's codes keep being refused, check that your phone sets its date and time automatically.",
    sixDigits: "Type the 6 digits the app shows.",
    backupShape: "Type one of your backup codes, like abcd-efgh.",
    tooManyWrong: "That was the last try for this sign-in. Sign in again with your password.",
    tooSlow: "This sign-in took too long. Sign in again with your password.",
    wait: (s) => "Too many tries. Please wait " + waitWords(s) + ", then try again.",
    tryAgain: "Too many tries. Please try again in a moment.",
    passkeyCancelled: "The passkey was not used (cancelled or timed out). Try again.",
    passkeyUnknown: "That passkey cannot sign you in here. It may have been removed from your account: use another way to sign in.",
    passkeyFailed: "The passkey could not be used.",
    passkeyExists: "This passkey is registered already.",
    wrongPassword: "That password is not right.",
    sessionEnded: "Your session has ended. Please sign in again.",
    signedOut: "You are signed out.",
    logoutAsked: "An app asks to sign you out of this service. To do so, press Sign out.",
    keyCopied: "The key is copied.",
    codesCopied: "The codes are copied.",
    noCopy: "Copying is not allowed here: select the text and copy it yourself.",
    signedInAs: (who) => "Signed in as " + who + ".",
    totpOn: (left) => "On. Backup codes left: " + left + ".",
    totpOff: "Off. Add one to protect your account with a code from your phone.",
    added: (day) => "Added " + day,
    lastUsed: (day) => ", last used " + day,
    notUsed: ", not used yet",
    remove: "Remove",
    removeLabel: (name) => "Remove the passkey " + name,
    removeAsk: (name) => "Remove the passkey \"" + name + "\"? You can no longer sign in with it.",
    removed: (name) => "Passkey \"" + name + "\" removed.",
    passkeyAdded: (name) => "Passkey \"" + name + "\" added.",
    totpEnabled: "Your authenticator app is on: you will need it the next time you sign in, on this device too.",
    totpDisabled: "The authenticator app is off.",
    disableAsk: "Turning off the authenticator app also deletes your backup codes and signs you out everywhere else. Confirm with your password.",
    regenerateAsk: "New backup codes replace all the old ones. Confirm with your password.",
    regenerated: "New backup codes made; the old ones no longer work.",
    codesFile: (account, day) => service + " backup codes\nAccount: " + account + "\nMade on " + day +
      "\nEach code works once.\n\n",
    methods: { totp: "Authenticator app code", passkey: "Passkey", backup_code: "Backup code" },
    confirm: "Confirm",
    usePasskey: "Use my passkey",
    toContinue: (host) => "Sign in to continue to " + host + ".",
    signInAgain: (host) => "To continue to " + host + ", sign in again.",
    needSecond: (host) => host + " asks for a second step when you sign in. Set up an authenticator app or add a passkey, then sign in again to continue.",
    againWithApp: (host) => "Your authenticator app is on. Sign in again with it to continue to " + host + ".",
    againWithPasskey: (host) => "Your passkey is added. Sign in again with it to continue to " + host + ".",
    notOnward: (host) => "You are signed in here, but could not be sent on to " + host + ". Try again in a moment.",
    titles: {
      loading: "Loading", signin: "Sign in", second: "Confirm it is you", account: "Your account",
      setup: "Set up an authenticator app", codes: "Your backup codes",
    },
  };
  function waitWords(s) {
    if (s < 90) return s + " seconds";
    return Math.ceil(s / 60) + " minutes";
  }

  // The screens. Each owns one message place, above its button; a screen change clears
  // every message and every field's error, and moves the focus to the heading.
  const screens = ["loading", "signin", "second", "account", "setup", "codes"];
  let current = "loading";
  function show(name) {
    for (const s of screens) $("screen-" + s).hidden = s !== name;
    current = name;
    clearMessages();
    $("title").textContent = WORDS.titles[name];
    document.title = WORDS.titles[name] + " — " + service;
    $("heading").focus();
  }
  function clearMessages() {
    for (const el of document.querySelectorAll(".msg")) { el.textContent = ""; el.hidden = true; }
    for (const el of document.querySelectorAll("[aria-invalid]")) unmark(el);
  }
  // Says `text` in the message place `place` (a screen's, or the confirmation's): an
  // error unless `ok` (true: something done; NOTE: what to do next). A new message
  // replaces the old one there.
  const NOTE = "note";
  function say(place, text, ok) {
    const el = $("msg-" + place);
    el.textContent = text || "";
    el.hidden = !text;
    el.className = "msg " + (ok === NOTE ? "note" : ok ? "ok" : "error");
    if (text) el.scrollIntoView({ block: "nearest" });
  }
  // An error about a field: said in its place, tied to the field, which takes the focus.
  function fieldError(place, field, text) {
    say(place, text);
    for (const el of document.querySelectorAll("[aria-invalid]")) unmark(el);
    const input = $(field);
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", "msg-" + place);
    input.focus();
    if (input.select) input.select();
  }
  function unmark(el) { el.removeAttribute("aria-invalid"); el.removeAttribute("aria-describedby"); }

  // One API call. A refusal carries its status, the server's sentence and Retry-After;
  // each caller turns it into words a person can act on.
  async function api(method, path, body, retried) {
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    let r;
    try {
      r = await fetch(path, { method, headers, credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw refusal(0, WORDS.unreachable, 0);
    }
    const data = r.status === 204 ? null : await r.json().catch(() => null);
    if (r.ok) return data;
    if (r.status === 401 && token && path.startsWith("/api/v1/") && !retried) {
      // The access token lives an hour: get a new one from the cookie, once.
      try { token = (await api("POST", "/api/auth/refresh", {}, true)).token; }
      catch (e) {
        signedOutHere();
        signInScreen(WORDS.sessionEnded, false);
        throw refusal(401, WORDS.sessionEnded, 0, true);
      }
      return api(method, path, body, true);
    }
    const said = (data && data.error) || WORDS.failed(r.status);
    throw refusal(r.status, said, parseInt(r.headers.get("Retry-After") || "0", 10));
  }
  function refusal(status, said, retryAfter, handled) {
    const e = new Error(said);
    e.status = status; e.said = said; e.retryAfter = retryAfter; e.handled = handled;
    return e;
  }
  // The words for a refusal nobody explained more closely: the throttle says how long
  // to wait; anything else, the server's own sentence.
  function words(e) {
    if (e.status === 429) return e.retryAfter > 1 ? WORDS.wait(e.retryAfter) : WORDS.tryAgain;
    return e.said || e.message || WORDS.failed(e.status);
  }

  // Whether this browser has signed in before and not out: a marker, not a secret (the
  // login itself is the HttpOnly cookie). Without it a first visit tries no refresh.
  const MARKER = "mfad.signed-in";
  function remember() { try { window.localStorage.setItem(MARKER, "1"); } catch (e) { /* private mode */ } }
  function signedOutHere() {
    token = null;
    try { window.localStorage.removeItem(MARKER); } catch (e) { /* private mode */ }
  }
  function signedInBefore() { try { return window.localStorage.getItem(MARKER) === "1"; } catch (e) { return false; } }

  // WebAuthn's binary fields travel as base64url without padding.
  function fromB64(s) {
    const b = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
    return Uint8Array.from(b, (c) => c.charCodeAt(0)).buffer;
  }
  function toB64(buf) {
    let s = "";
    for (const b of new Uint8Array(buf)) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function credentialJSON(c) {
    const r = c.response, out = { id: c.id, rawId: toB64(c.rawId), type: c.type, response: {
      clientDataJSON: toB64(r.clientDataJSON) } };
    if (r.attestationObject) out.response.attestationObject = toB64(r.attestationObject);
    if (r.authenticatorData) {
      out.response.authenticatorData = toB64(r.authenticatorData);
      out.response.signature = toB64(r.signature);
      if (r.userHandle) out.response.userHandle = toB64(r.userHandle);
    }
    return out;
  }
  async function assertWith(options) {
    const publicKey = { challenge: fromB64(options.challenge), rpId: options.rpId,
      timeout: options.timeout, userVerification: options.userVerification,
      allowCredentials: (options.allowCredentials || []).map((c) => ({ type: c.type, id: fromB64(c.id) })) };
    return credentialJSON(await navigator.credentials.get({ publicKey }));
  }
  // The words for a passkey that did not work: the browser's refusal, or the server's.
  function passkeyWords(e) {
    if (e && e.name === "NotAllowedError") return WORDS.passkeyCancelled;
    if (e && e.name === "InvalidStateError") return WORDS.passkeyExists;
    if (e && (e.status === 401 || e.status === 400) && /assertion/i.test(e.said || "")) return WORDS.passkeyUnknown;
    if (e && e.status !== undefined) return words(e);
    return WORDS.passkeyFailed;
  }

  // Signed in: by a sign-in on this page, or `reloaded` from the refresh cookie. Each
  // sign-in here opens the browser session forward-auth reads (its answer is needed
  // only to send the person on); a reload opens one only for an app that waits.
  async function signedIn(tokens, reloaded) {
    token = tokens.token;
    challenge = null;
    remember();
    $("signin-form").reset();
    if (reloaded && mustSignIn) {
      // The app asks for a sign-in now: the one this browser kept does not do.
      token = null;
      signInScreen(WORDS.signInAgain(onwardName()));
      return;
    }
    const onward = back !== null && !waitsForSecond();
    const refused = !reloaded || onward ? await openSession() : null;
    if (onward && refused === null) { leave(); return; }
    if (onward && reloaded && refused.status === 401) {
      // The login is too old to open a session: a new sign-in, then on (never a loop:
      // after a sign-in here the person is not sent back to this screen).
      token = null;
      signInScreen(WORDS.signInAgain(onwardName()));
      return;
    }
    await showAccount();
    if (onward) say("account", WORDS.notOnward(onwardName()));
  }
  // The browser session of this login: null when it is open, else the refusal.
  async function openSession() {
    try { await api("POST", "/api/auth/session", {}); return null; }
    catch (e) { return e; }
  }
  // Whether the app asks for a second factor this login lacks: then sending the person
  // on would only bring them back. The token's payload names how the login was made
  // (`amr`); forward-auth counts `otp` and `hwk`.
  function waitsForSecond() {
    if (!needSecond) return false;
    try {
      const claims = JSON.parse(new TextDecoder().decode(fromB64(token.split(".")[1])));
      return !(claims.amr || []).some((m) => m === "otp" || m === "hwk");
    } catch (e) { return true; }
  }
  function leave() {
    show("loading");
    window.location.assign(back.href);
  }
  // The sign-in screen, saying `text` (or, for an app that waits, where it leads).
  function signInScreen(text, ok) {
    show("signin");
    // An app's `login_hint`: the email it expects, to start from.
    const hint = back !== null ? params.get("login_hint") : null;
    if (hint && !$("signin-email").value) $("signin-email").value = hint;
    if (text) say("signin", text, ok === undefined ? NOTE : ok);
    else if (back) say("signin", WORDS.toContinue(onwardName()), NOTE);
  }
  // A second factor was just added for an app that asks for one: the login that lacks
  // it is over (turning the app on ends every login) or is ended here, and the next
  // sign-in, with the new factor, sends the person on.
  async function signInWithSecond(text) {
    try { await api("POST", "/api/auth/logout", {}); } catch (e) { /* ended already */ }
    signedOutHere();
    signInScreen(text, true);
  }

  // Sign in: password, then the second step if the account has one.
  $("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const address = $("signin-email").value.trim(), password = $("signin-password").value;
    if (!address) { fieldError("signin", "signin-email", WORDS.enterBoth); return; }
    if (!password) { fieldError("signin", "signin-password", WORDS.enterBoth); return; }
    say("signin", "");
    try {
      const r = await api("POST", "/api/auth", { email: address, password });
      if (r.mfa_required) { challenge = r.mfa_token; wrongAnswers = 0; secondStep(r.mfa_methods); }
      else await signedIn(r);
    } catch (e) {
      if (e.handled) return;
      fieldError("signin", "signin-password", e.status === 401 ? WORDS.badLogin : words(e));
    }
  });

  $("passkey-signin").addEventListener("click", async () => {
    say("signin", "");
    try {
      const o = await api("POST", "/api/auth/passkey/login/options", {});
      const credential = await assertWith(o);
      await signedIn(await api("POST", "/api/auth/passkey/login", { sessionId: o.sessionId, credential }));
    } catch (e) { if (!e.handled) say("signin", passkeyWords(e)); }
  });

  // The second step: one button per method the server names, the chosen one pressed.
  function secondStep(methods) {
    const box = $("second-methods");
    box.textContent = "";
    for (const m of methods) {
      const b = document.createElement("button");
      b.type = "button"; b.className = "secondary"; b.textContent = WORDS.methods[m] || m;
      b.dataset.method = m;
      b.addEventListener("click", () => { pick(m); focusMethod(); });
      box.appendChild(b);
    }
    show("second");
    pick(methods[0]);
  }
  function pick(m) {
    method = m;
    for (const b of $("second-methods").children) b.setAttribute("aria-pressed", String(b.dataset.method === m));
    $("second-totp").hidden = m !== "totp";
    $("second-backup").hidden = m !== "backup_code";
    $("second-passkey").hidden = m !== "passkey";
    $("second-go").textContent = m === "passkey" ? WORDS.usePasskey : WORDS.confirm;
    say("second", "");
    for (const el of document.querySelectorAll("#screen-second [aria-invalid]")) unmark(el);
  }
  function focusMethod() {
    const input = { totp: "totp-code", backup_code: "backup-code", passkey: "second-go" }[method];
    if (input) $(input).focus();
  }
  // The second step's answer, whichever the method.
  async function secondGo() {
    say("second", "");
    const field = { totp: "totp-code", backup_code: "backup-code" }[method];
    let body;
    try {
      if (method === "passkey") {
        const o = await api("POST", "/api/auth/mfa/passkey/options", { mfaToken: challenge });
        body = { type: "passkey", credential: await assertWith(o) };
      } else if (method === "totp") {
        const code = $("totp-code").value.replace(/\s/g, "");
        if (!/^\d{6}$/.test(code)) { fieldError("second", field, WORDS.sixDigits); return; }
        body = { type: "totp", code };
      } else {
        const code = $("backup-code").value.trim();
        if (!code) { fieldError("second", field, WORDS.backupShape); return; }
        body = { type: "backup", code };
      }
    } catch (e) { if (!e.handled) say("second", passkeyWords(e)); return; }
    try {
      if (field) $(field).value = "";
      await signedIn(await api("POST", "/api/auth/mfa/verify", Object.assign({ mfaToken: challenge }, body)));
    } catch (e) {
      if (e.handled) return;
      // A challenge that expired or took its last wrong answer: back to the password.
      const dead = (e.status === 401 && /challenge/i.test(e.said)) ||
        (e.status === 429 && /log in again/i.test(e.said));
      if (dead) {
        challenge = null;
        signInScreen(e.status === 429 ? WORDS.tooManyWrong : WORDS.tooSlow, false);
        return;
      }
      if (e.status !== 401) { say("second", words(e)); return; }
      wrongAnswers += 1;
      const left = WORDS.triesLeft(Math.max(5 - wrongAnswers, 1));
      const wrong = method === "passkey" ? WORDS.passkeyUnknown
        : method === "backup_code" ? WORDS.wrongBackup : WORDS.wrongCode;
      const hint = method === "totp" && wrongAnswers >= 2 ? " " + WORDS.clock : "";
      if (field) fieldError("second", field, wrong + " " + left + hint);
      else say("second", wrong + " " + left);
    }
  }
  $("second-go").addEventListener("click", secondGo);
  $("second-totp").addEventListener("submit", (ev) => { ev.preventDefault(); secondGo(); });
  $("second-backup").addEventListener("submit", (ev) => { ev.preventDefault(); secondGo(); });
  $("second-cancel").addEventListener("click", () => { challenge = null; signInScreen(); });

  // The account: what protects it, and what can be changed.
  async function showAccount() {
    const [me, status, passkeys] = await Promise.all([
      api("GET", "/api/v1/me"), api("GET", "/api/v1/me/mfa/status"), api("GET", "/api/v1/me/passkeys")]);
    email = me.email || "account " + me.id;
    $("account-who").textContent = WORDS.signedInAs(email);
    const on = status.totpEnabled;
    $("totp-state").textContent = on ? WORDS.totpOn(status.backupCodesRemaining) : WORDS.totpOff;
    $("totp-setup").hidden = on;
    $("totp-disable").hidden = !on;
    $("codes-regenerate").hidden = !on;
    const list = $("passkey-list");
    list.textContent = "";
    for (const p of passkeys) {
      const li = document.createElement("li");
      const text = document.createElement("span");
      text.textContent = p.name;
      const when = document.createElement("small");
      when.textContent = WORDS.added(day(p.createdAt)) + (p.lastUsedAt ? WORDS.lastUsed(day(p.lastUsedAt)) : WORDS.notUsed);
      text.appendChild(when);
      const remove = document.createElement("button");
      remove.type = "button"; remove.className = "danger"; remove.textContent = WORDS.remove;
      remove.setAttribute("aria-label", WORDS.removeLabel(p.name));
      remove.addEventListener("click", () => removePasskey(p));
      li.append(text, remove);
      list.appendChild(li);
    }
    $("passkey-none").hidden = passkeys.length > 0;
    closeConfirm();
    show("account");
    if (waitsForSecond()) say("account", WORDS.needSecond(onwardName()), NOTE);
  }
  function day(iso) { return new Date(iso).toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" }); }
  // Runs an action of the account screen, its refusal said in the screen's place.
  async function onAccount(action) {
    try { await action(); } catch (e) { if (!e.handled) say("account", words(e)); }
  }

  function removePasskey(p) {
    if (!window.confirm(WORDS.removeAsk(p.name))) return;
    onAccount(async () => {
      await api("DELETE", "/api/v1/me/passkeys/" + encodeURIComponent(p.id));
      await showAccount();
      say("account", WORDS.removed(p.name), true);
    });
  }

  $("passkey-add").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    say("account", "");
    try {
      const o = await api("POST", "/api/v1/passkey/register/options", {});
      const publicKey = { challenge: fromB64(o.challenge), rp: o.rp,
        user: { id: fromB64(o.user.id), name: o.user.name, displayName: o.user.displayName },
        pubKeyCredParams: o.pubKeyCredParams, timeout: o.timeout,
        excludeCredentials: o.excludeCredentials.map((c) => ({ type: c.type, id: fromB64(c.id) })),
        authenticatorSelection: o.authenticatorSelection, attestation: o.attestation };
      const credential = credentialJSON(await navigator.credentials.create({ publicKey }));
      const name = $("passkey-name").value.trim();
      const made = await api("POST", "/api/v1/passkey/register", { name: name || undefined, credential });
      $("passkey-name").value = "";
      if (waitsForSecond()) { await signInWithSecond(WORDS.againWithPasskey(onwardName())); return; }
      await showAccount();
      say("account", WORDS.passkeyAdded(made.name), true);
    } catch (e) { if (!e.handled) say("account", passkeyWords(e)); }
  });

  // Authenticator app: the seed's QR code, link and key, then the first code.
  $("totp-setup").addEventListener("click", () => onAccount(async () => {
    const r = await api("POST", "/api/v1/me/mfa/totp/setup", {});
    $("setup-qr").src = r.qrCode;
    $("setup-link").href = r.otpauthUri;
    const key = $("setup-secret");
    key.textContent = "";
    for (const group of r.secret.match(/.{1,4}/g)) {
      const span = document.createElement("span");
      span.textContent = group;
      key.append(span, " ");
    }
    key.dataset.secret = r.secret;
    setupWrong = 0;
    show("setup");
  }));
  $("setup-copy").addEventListener("click", () => copy("setup", $("setup-secret").dataset.secret, WORDS.keyCopied));
  $("setup-cancel").addEventListener("click", () => onAccount(showAccount));
  $("setup-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const code = $("setup-code").value.replace(/\s/g, "");
    if (!/^\d{6}$/.test(code)) { fieldError("setup", "setup-code", WORDS.sixDigits); return; }
    try {
      const r = await api("POST", "/api/v1/me/mfa/totp/enable", { code });
      $("setup-code").value = "";
      showCodes(r.backupCodes, WORDS.totpEnabled);
    } catch (e) {
      if (e.handled) return;
      if (e.status !== 422) { fieldError("setup", "setup-code", words(e)); return; }
      setupWrong += 1;
      fieldError("setup", "setup-code", WORDS.wrongCode + (setupWrong >= 2 ? " " + WORDS.clock : ""));
    }
  });

  let shownCodes = [];
  function showCodes(codes, message) {
    shownCodes = codes;
    const list = $("codes-list");
    list.textContent = "";
    for (const c of codes) { const li = document.createElement("li"); li.textContent = c; list.appendChild(li); }
    show("codes");
    say("codes", message, true);
  }
  $("codes-copy").addEventListener("click", () => copy("codes", shownCodes.join("\n"), WORDS.codesCopied));
  $("codes-download").addEventListener("click", () => {
    const today = new Date().toISOString().slice(0, 10);
    const text = WORDS.codesFile(email, today) + shownCodes.join("\n") + "\n";
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
    a.download = fileName(service) + "-backup-codes-" + today + ".txt";
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  });
  // A name that is safe as a file name on every system.
  function fileName(s) { return s.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "") || "account"; }
  $("codes-done").addEventListener("click", () => {
    shownCodes = []; $("codes-list").textContent = "";
    if (waitsForSecond()) signInWithSecond(WORDS.againWithApp(onwardName()));
    else onAccount(showAccount);
  });

  async function copy(place, text, done) {
    try { await navigator.clipboard.writeText(text); say(place, done, true); }
    catch (e) { say(place, WORDS.noCopy); }
  }

  // Disable and regenerate ask for the password in a framed form; the screen's other
  // buttons wait while it is open.
  function askConfirm(opener, what, action) {
    confirmAction = action;
    confirmOpener = opener;
    $("confirm-what").textContent = what;
    $("confirm-password").value = "";
    say("confirm", "");
    say("account", "");
    $("confirm-form").hidden = false;
    for (const b of document.querySelectorAll("#screen-account button")) {
      if (!$("confirm-form").contains(b)) b.disabled = true;
    }
    $("confirm-password").focus();
  }
  function closeConfirm() {
    $("confirm-form").hidden = true;
    for (const b of document.querySelectorAll("#screen-account button")) b.disabled = false;
  }
  $("totp-disable").addEventListener("click", () => askConfirm("totp-disable", WORDS.disableAsk, async (password) => {
    await api("POST", "/api/v1/me/mfa/totp/disable", { password });
    await showAccount();
    say("account", WORDS.totpDisabled, true);
  }));
  $("codes-regenerate").addEventListener("click", () => askConfirm("codes-regenerate", WORDS.regenerateAsk, async (password) => {
    const r = await api("POST", "/api/v1/me/mfa/backup-codes/regenerate", { password });
    closeConfirm();
    showCodes(r.backupCodes, WORDS.regenerated);
  }));
  $("confirm-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    say("confirm", "");
    try { await confirmAction($("confirm-password").value); }
    catch (e) {
      if (e.handled) return;
      fieldError("confirm", "confirm-password", e.status === 422 ? WORDS.wrongPassword : words(e));
    }
  });
  $("confirm-cancel").addEventListener("click", () => { closeConfirm(); $(confirmOpener).focus(); });

  $("signout").addEventListener("click", async () => {
    try { await api("POST", "/api/auth/logout", {}); } catch (e) { /* signed out here anyway */ }
    signedOutHere();
    email = "";
    signInScreen(WORDS.signedOut, true);
  });

  // After an app's sign-out (OpenID's logout): done, or asked of the person.
  const logout = params.get("logout");
  // A reload: the cookie may still hold a login, if this browser signed in before.
  (async () => {
    if (logout === "done") { signedOutHere(); signInScreen(WORDS.signedOut, true); return; }
    if (back && back.origin === window.location.origin) {
      try {
        const client = back.searchParams.get("client_id") || "";
        appName = (await api("GET", "/oidc/client-name?client_id=" + encodeURIComponent(client))).name;
      } catch (e) { /* the authorization will say what is wrong */ }
    }
    if (!signedInBefore()) { signInScreen(); return; }
    try {
      await signedIn(await api("POST", "/api/auth/refresh", {}, true), true);
      if (logout === "confirm") say("account", WORDS.logoutAsked, NOTE);
    } catch (e) { signedOutHere(); if (current !== "signin") signInScreen(); }
  })();
})();
