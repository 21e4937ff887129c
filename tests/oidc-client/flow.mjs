// The OpenID provider through panva's openid-client (a certified relying party
// library), as tests/api/openid_client.rs runs it: discovery, the code flow of a public
// client with PKCE S256 (the authorization answered for the browser session the test
// made), the ID token checked by the library (signature from the JWKS, iss, aud, nonce,
// exp), userinfo, a refresh, a revocation. Prints one JSON object of what it saw; a
// library refusal is a non-zero exit with its message.
import * as client from "openid-client";

const { ISSUER, CLIENT_ID, REDIRECT_URI, SESSION } = process.env;

const config = await client.discovery(new URL(ISSUER), CLIENT_ID, undefined, client.None(), {
  // The test's issuer is http to loopback (no certificate to hand the library).
  execute: [client.allowInsecureRequests],
});
// Check ID tokens' signatures against the JWKS too (the library skips it by default
// for a token endpoint reached over TLS).
client.enableNonRepudiationChecks(config);

const verifier = client.randomPKCECodeVerifier();
const challenge = await client.calculatePKCECodeChallenge(verifier);
const nonce = client.randomNonce();
const state = client.randomState();
const authorize = client.buildAuthorizationUrl(config, {
  redirect_uri: REDIRECT_URI,
  scope: "openid email offline_access",
  code_challenge: challenge,
  code_challenge_method: "S256",
  nonce,
  state,
});
// The browser's part: the authorization with the session cookie, not followed.
const answer = await fetch(authorize, {
  redirect: "manual",
  headers: { cookie: "mfad_session=" + SESSION },
});
const back = new URL(answer.headers.get("location"));

const tokens = await client.authorizationCodeGrant(config, back, {
  pkceCodeVerifier: verifier,
  expectedNonce: nonce,
  expectedState: state,
  idTokenExpected: true,
});
const claims = tokens.claims();
const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
await client.tokenRevocation(config, refreshed.refresh_token);
let afterRevocation;
try {
  await client.refreshTokenGrant(config, refreshed.refresh_token);
  afterRevocation = "accepted";
} catch (e) {
  afterRevocation = e.error || e.code || String(e);
}
let userinfoAfter;
try {
  await client.fetchUserInfo(config, refreshed.access_token, claims.sub);
  userinfoAfter = "accepted";
} catch (e) {
  userinfoAfter = e.status || e.code || String(e);
}

console.log(JSON.stringify({
  issuer: config.serverMetadata().issuer,
  claims,
  userinfo,
  refreshed: { id_token: Boolean(refreshed.id_token), sub: refreshed.claims()?.sub },
  afterRevocation,
  userinfoAfter,
}));
