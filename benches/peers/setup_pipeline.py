"""mfad loadgen peer: the TOTP setup pipeline in Python (pyotp + qrcode with PIL).

random 160-bit secret -> base32 -> otpauth URI -> 300x300 QR PNG -> base64 -> JSON,
the same steps as mfad's setup endpoint. Usage: python3 setup_pipeline.py SECONDS MAX_CALLS
Prints one line: `us_per_call=<float> calls=<int> png_bytes=<int>`. Timing is inside
the script, after a short warm-up, so interpreter start-up is not counted.
"""
import base64
import io
import json
import sys
import time

import pyotp
import qrcode
from PIL import Image

SIZE = 300


def pipeline():
    secret = pyotp.random_base32()  # 32 characters = 160 bits, from the OS CSPRNG
    uri = pyotp.TOTP(secret).provisioning_uri(name="user@example.com", issuer_name="Storno")
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4, box_size=1)
    qr.add_data(uri)
    qr.make(fit=True)
    modules = qr.modules_count + 8
    qr.box_size = SIZE // modules  # whole pixels per module, centred on a 300x300 canvas
    img = qr.make_image().get_image()
    canvas = Image.new("1", (SIZE, SIZE), 1)
    canvas.paste(img, ((SIZE - img.size[0]) // 2, (SIZE - img.size[1]) // 2))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    png = buf.getvalue()
    body = json.dumps(
        {
            "secret": secret,
            "otpauthUri": uri,
            "qrCode": "data:image/png;base64," + base64.b64encode(png).decode("ascii"),
        }
    )
    return len(png), len(body)


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    max_calls = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
    for _ in range(20):
        pipeline()
    calls = 0
    png_bytes = 0
    start = time.perf_counter()
    deadline = start + seconds
    while calls < max_calls:
        png_bytes, _ = pipeline()
        calls += 1
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - start
    print(f"us_per_call={elapsed / calls * 1e6:.1f} calls={calls} png_bytes={png_bytes}")


if __name__ == "__main__":
    main()
