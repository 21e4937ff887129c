// mfad's self-service page: a client of mfad's JSON API like any other. The access token
// lives in this closure only; the refresh token only in the HttpOnly cookie, so a reload
// signs in again silently through POST /api/auth/refresh. No framework, no build step.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  let token = null;        // the access token, in memory only
  let challenge = null;    // the login's MFA challenge while the second step is shown
  let confirmAction = null;

  const screens = ["loading", "signin", "second", "account", "setup", "codes"];
  const titles = {
    loading: "Your account", signin: "Sign in", second: "Confirm it is you",
    account: "Your account", setup: "Set up an authenticator app", codes: "Your backup codes",
  };
  function show(name) {
    for (const s of screens) $("screen-" + s).hidden = s !== name;
    $("title").textContent = titles[name];
    const first = $("screen-" + name).querySelector("input, button");
    if (first && name !== "account") first.focus();
  }
  function say(id, text) { const el = $(id); el.textContent = text || ""; el.hidden = !text; }
  function notice(text) { say("notice", text); }

  // One API call; errors become sentences a person can act on.
  async function api(method, path, body, retried) {
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    let r;
    try {
      r = await fetch(path, { method, headers, credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw new Error("The server cannot be reached. Check your connection and try again.");
    }
    const data = r.status === 204 ? null : await r.json().catch(() => null);
    if (r.ok) return data;
    if (r.status === 401 && token && path.startsWith("/api/v1/") && !retried) {
      // The access token lives an hour: get a new one from the cookie, once.
      try { token = (await api("POST", "/api/auth/refresh", {}, true)).token; }
      catch (e) {
        token = null;
        const ended = "Your session has ended. Please sign in again.";
        show("signin"); say("signin-error", ended);
        throw new Error(ended);
      }
      return api(method, path, body, true);
    }
    let text = (data && data.error) || "Something went wrong (" + r.status + ").";
    if (r.status === 429) {
      const wait = parseInt(r.headers.get("Retry-After") || "0", 10);
      // (A challenge's last try says 1 s: there it means "start again", not "wait".)
      if (wait > 1) text += " Please wait " + waitWords(wait) + " before trying again.";
    }
    const err = new Error(text);
    err.status = r.status;
    throw err;
  }
  function waitWords(s) {
    if (s < 90) return s + " seconds";
    const m = Math.ceil(s / 60);
    return m + " minutes";
  }

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
  function passkeyError(e) {
    if (e && e.name === "NotAllowedError") return "The passkey was not used (cancelled or timed out). Try again.";
    return e && e.message ? e.message : "The passkey could not be used.";
  }

  async function signedIn(tokens) {
    token = tokens.token;
    challenge = null;
    $("signin-form").reset();
    await showAccount();
  }

  // Sign in: password, then the second step if the account has one.
  $("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    say("signin-error", "");
    const email = $("signin-email").value.trim(), password = $("signin-password").value;
    if (!email || !password) { say("signin-error", "Enter your email and your password."); return; }
    try {
      const r = await api("POST", "/api/auth", { email, password });
      if (r.mfa_required) { challenge = r.mfa_token; secondStep(r.mfa_methods); }
      else await signedIn(r);
    } catch (e) { say("signin-error", e.message); $("signin-password").select(); }
  });

  $("passkey-signin").addEventListener("click", async () => {
    say("passkey-signin-error", "");
    try {
      const o = await api("POST", "/api/auth/passkey/login/options", {});
      const credential = await assertWith(o);
      await signedIn(await api("POST", "/api/auth/passkey/login", { sessionId: o.sessionId, credential }));
    } catch (e) { say("passkey-signin-error", passkeyError(e)); }
  });

  const methodNames = { totp: "Authenticator app code", passkey: "Passkey", backup_code: "Backup code" };
  function secondStep(methods) {
    const box = $("second-methods");
    box.textContent = "";
    for (const m of methods) {
      const b = document.createElement("button");
      b.type = "button"; b.className = "secondary"; b.textContent = methodNames[m] || m;
      b.dataset.method = m;
      b.addEventListener("click", () => pick(m));
      box.appendChild(b);
    }
    say("second-error", "");
    show("second");
    pick(methods[0]);
  }
  function pick(m) {
    for (const b of $("second-methods").children) b.setAttribute("aria-pressed", String(b.dataset.method === m));
    $("second-totp").hidden = m !== "totp";
    $("second-backup").hidden = m !== "backup_code";
    $("second-passkey").hidden = m !== "passkey";
    const input = { totp: "totp-code", backup_code: "backup-code", passkey: "second-passkey-go" }[m];
    if (input) $(input).focus();
  }
  async function verify(body) {
    say("second-error", "");
    try { await signedIn(await api("POST", "/api/auth/mfa/verify", Object.assign({ mfaToken: challenge }, body))); }
    catch (e) {
      // A challenge that expired or took its last wrong answer: back to the password.
      const dead = (e.status === 401 && /challenge/i.test(e.message)) ||
        (e.status === 429 && /log in again/i.test(e.message));
      if (dead) { challenge = null; show("signin"); say("signin-error", e.message); }
      else say("second-error", e.message);
    }
  }
  $("second-totp").addEventListener("submit", (ev) => {
    ev.preventDefault(); verify({ type: "totp", code: $("totp-code").value.replace(/\s/g, "") });
    $("totp-code").value = "";
  });
  $("second-backup").addEventListener("submit", (ev) => {
    ev.preventDefault(); verify({ type: "backup", code: $("backup-code").value.trim() });
    $("backup-code").value = "";
  });
  $("second-passkey-go").addEventListener("click", async () => {
    say("second-error", "");
    try {
      const o = await api("POST", "/api/auth/mfa/passkey/options", { mfaToken: challenge });
      await verify({ type: "passkey", credential: await assertWith(o) });
    } catch (e) { say("second-error", passkeyError(e)); }
  });
  $("second-cancel").addEventListener("click", () => { challenge = null; show("signin"); });

  // The account: what protects it, and what can be changed.
  async function showAccount() {
    say("account-error", "");
    const [me, status, passkeys] = await Promise.all([
      api("GET", "/api/v1/me"), api("GET", "/api/v1/me/mfa/status"), api("GET", "/api/v1/me/passkeys")]);
    $("account-who").textContent = "Signed in as " + (me.email || "account " + me.id) + ".";
    const on = status.totpEnabled;
    $("totp-state").textContent = on
      ? "On. Backup codes left: " + status.backupCodesRemaining + "."
      : "Off. Add one to protect your account with a code from your phone.";
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
      when.textContent = "Added " + day(p.createdAt) + (p.lastUsedAt ? ", last used " + day(p.lastUsedAt) : ", not used yet");
      text.appendChild(when);
      const remove = document.createElement("button");
      remove.type = "button"; remove.className = "danger"; remove.textContent = "Remove";
      remove.setAttribute("aria-label", "Remove the passkey " + p.name);
      remove.addEventListener("click", () => removePasskey(p));
      li.append(text, remove);
      list.appendChild(li);
    }
    $("passkey-none").hidden = passkeys.length > 0;
    $("confirm-form").hidden = true;
    show("account");
  }
  function day(iso) { return new Date(iso).toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" }); }

  async function removePasskey(p) {
    if (!window.confirm("Remove the passkey \"" + p.name + "\"? You can no longer sign in with it.")) return;
    say("passkey-error", "");
    try { await api("DELETE", "/api/v1/me/passkeys/" + encodeURIComponent(p.id)); notice("Passkey \"" + p.name + "\" removed."); await showAccount(); }
    catch (e) { say("passkey-error", e.message); }
  }

  $("passkey-add").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    say("passkey-error", "");
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
      notice("Passkey \"" + made.name + "\" added.");
      await showAccount();
    } catch (e) {
      say("passkey-error", e && e.name === "InvalidStateError" ? "This passkey is registered already." : passkeyError(e));
    }
  });

  // Authenticator app: the seed's QR code and key, then the first code.
  $("totp-setup").addEventListener("click", async () => {
    notice("");
    try {
      const r = await api("POST", "/api/v1/me/mfa/totp/setup", {});
      $("setup-qr").src = r.qrCode;
      $("setup-secret").textContent = r.secret.replace(/(.{4})(?=.)/g, "$1 ");
      $("setup-secret").dataset.secret = r.secret;
      say("setup-error", "");
      show("setup");
      $("setup-code").focus();
    } catch (e) { say("account-error", e.message); }
  });
  $("setup-copy").addEventListener("click", () => copy($("setup-secret").dataset.secret, "The key is copied."));
  $("setup-cancel").addEventListener("click", () => showAccount());
  $("setup-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    say("setup-error", "");
    const code = $("setup-code").value.replace(/\s/g, "");
    if (!/^\d{6}$/.test(code)) { say("setup-error", "Type the 6 digits the app shows."); return; }
    try {
      const r = await api("POST", "/api/v1/me/mfa/totp/enable", { code });
      $("setup-code").value = "";
      showCodes(r.backupCodes, "Your authenticator app is on: you will need it the next time you sign in, on this device too.");
    } catch (e) { say("setup-error", e.message); }
  });

  let shownCodes = [];
  function showCodes(codes, message) {
    shownCodes = codes;
    const list = $("codes-list");
    list.textContent = "";
    for (const c of codes) { const li = document.createElement("li"); li.textContent = c; list.appendChild(li); }
    notice(message);
    show("codes");
  }
  $("codes-copy").addEventListener("click", () => copy(shownCodes.join("\n"), "The codes are copied."));
  $("codes-download").addEventListener("click", () => {
    const text = "Backup codes for " + location.host + "\nEach code works once.\n\n" + shownCodes.join("\n") + "\n";
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
    a.download = "backup-codes.txt";
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  });
  $("codes-done").addEventListener("click", () => { shownCodes = []; $("codes-list").textContent = ""; notice(""); showAccount(); });

  async function copy(text, done) {
    try { await navigator.clipboard.writeText(text); notice(done); }
    catch (e) { notice("Copying is not allowed here: select the text and copy it yourself."); }
  }

  // Disable and regenerate ask for the password (or, without one, a current code).
  function askConfirm(what, action) {
    confirmAction = action;
    $("confirm-what").textContent = what;
    $("confirm-password").value = "";
    say("confirm-error", "");
    $("confirm-form").hidden = false;
    $("confirm-password").focus();
  }
  $("totp-disable").addEventListener("click", () => askConfirm(
    "Turning off the authenticator app also deletes your backup codes and signs you out everywhere else. Confirm with your password.",
    async (password) => { await api("POST", "/api/v1/me/mfa/totp/disable", { password }); notice("The authenticator app is off."); await showAccount(); }));
  $("codes-regenerate").addEventListener("click", () => askConfirm(
    "New backup codes replace all the old ones. Confirm with your password.",
    async (password) => { const r = await api("POST", "/api/v1/me/mfa/backup-codes/regenerate", { password }); showCodes(r.backupCodes, "New backup codes made; the old ones no longer work."); }));
  $("confirm-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    say("confirm-error", "");
    try { await confirmAction($("confirm-password").value); }
    catch (e) { say("confirm-error", e.message); }
  });
  $("confirm-cancel").addEventListener("click", () => { $("confirm-form").hidden = true; });

  $("signout").addEventListener("click", async () => {
    try { await api("POST", "/api/auth/logout", {}); } catch (e) { /* signed out here anyway */ }
    token = null;
    notice("You are signed out.");
    show("signin");
  });

  // A reload: the cookie may still hold a login.
  (async () => {
    try { await signedIn(await api("POST", "/api/auth/refresh", {})); }
    catch (e) { show("signin"); }
  })();
})();
