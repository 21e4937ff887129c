// mfad loadgen peer: the TOTP setup pipeline in Node.js with the `qrcode` package.
//
// random 160-bit secret -> base32 -> otpauth URI -> 300x300 QR PNG -> base64 data URI ->
// JSON, the same steps as mfad's setup endpoint. Usage: node setup_pipeline.js SECONDS MAX_CALLS
// Prints one line: `us_per_call=<float> calls=<int> png_bytes=<int>`. Timing is inside the
// script, after a short warm-up, so start-up and JIT warm-up are not counted.
'use strict';
const crypto = require('crypto');
const QRCode = require('qrcode');

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

// RFC 4648 base32, no padding (Node has no built-in one).
function base32(bytes) {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

async function pipeline() {
  const secret = base32(crypto.randomBytes(20));
  const issuer = encodeURIComponent('Storno');
  const account = encodeURIComponent('user@example.com').replace(/%40/g, '@');
  const uri = `otpauth://totp/${issuer}:${account}?secret=${secret}&issuer=${issuer}`;
  const dataUrl = await QRCode.toDataURL(uri, { errorCorrectionLevel: 'M', margin: 4, width: 300 });
  const body = JSON.stringify({ secret, otpauthUri: uri, qrCode: dataUrl });
  const comma = dataUrl.indexOf(',');
  return [Buffer.from(dataUrl.slice(comma + 1), 'base64').length, body.length];
}

async function main() {
  const seconds = Number(process.argv[2] || 1);
  const maxCalls = Number(process.argv[3] || 100000);
  for (let i = 0; i < 50; i++) await pipeline();
  let calls = 0;
  let pngBytes = 0;
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(seconds * 1e9));
  while (calls < maxCalls) {
    [pngBytes] = await pipeline();
    calls++;
    if (process.hrtime.bigint() >= deadline) break;
  }
  const elapsedUs = Number(process.hrtime.bigint() - start) / 1e3;
  console.log(`us_per_call=${(elapsedUs / calls).toFixed(1)} calls=${calls} png_bytes=${pngBytes}`);
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
