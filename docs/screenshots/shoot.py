# Screenshots of the page's second step and account after a sign-out and a sign-in
# again, for a given mfad binary: python3 shoot.py BIN OUTPREFIX
import base64, hashlib, hmac, json, os, shutil, socket, struct, subprocess, sys, tempfile, time, urllib.request
binary, out = sys.argv[1], sys.argv[2]
d = tempfile.mkdtemp()
def free():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
port = free()
env = dict(os.environ)
srv = subprocess.Popen([binary, "--data-dir", d, "--listen", f"127.0.0.1:{port}"], stderr=subprocess.DEVNULL)
time.sleep(1)
email, pw = "pat@example.com", "correct horse battery"
subprocess.run([binary, "--data-dir", d, "user", "add", "--email", email, "--password-stdin"], input=pw.encode(), check=True, capture_output=True)
tok = subprocess.run([binary, "--data-dir", d, "token", "--email", email], check=True, capture_output=True).stdout.decode().strip()
def api(path, body):
    r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(), {"Content-Type": "application/json", "Authorization": "Bearer " + tok})
    return json.load(urllib.request.urlopen(r))
def totp(secret, t):
    k = base64.b32decode(secret + "=" * (-len(secret) % 8))
    h = hmac.new(k, struct.pack(">Q", int(t) // 30), hashlib.sha1).digest()
    o = h[-1] & 15
    return "%06d" % ((struct.unpack(">I", h[o:o + 4])[0] & 0x7fffffff) % 1000000)
secret = api("/api/v1/me/mfa/totp/setup", {})["secret"]
api("/api/v1/me/mfa/totp/enable", {"code": totp(secret, time.time())})
used = {totp(secret, time.time())}
def fresh():
    while totp(secret, time.time()) in used: time.sleep(0.5)
    c = totp(secret, time.time()); used.add(c); return c
dport = free()
drv = subprocess.Popen(["/usr/bin/chromedriver", f"--port={dport}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(1)
def wd(method, path, body=None):
    r = urllib.request.Request(f"http://127.0.0.1:{dport}{path}", None if body is None else json.dumps(body).encode(), {"Content-Type": "application/json"}, method=method)
    return json.load(urllib.request.urlopen(r))["value"]
caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": ["--headless=new", "--no-sandbox", "--window-size=420,1000", "--disable-gpu"]}}}}
sid = wd("POST", "/session", caps)["sessionId"]
S = f"/session/{sid}"
def js(script): return wd("POST", S + "/execute/sync", {"script": script, "args": []})
def wait(cond):
    for _ in range(200):
        if js(f"return !!({cond});"): return
        time.sleep(0.05)
    raise SystemExit("timeout: " + cond)
def shown(sel): wait(f"(e => e && e.offsetParent !== null)(document.querySelector({json.dumps(sel)}))")
def el(sel): return list(wd("POST", S + "/element", {"using": "css selector", "value": sel}).values())[0]
def typ(sel, text):
    e = el(sel); wd("POST", f"{S}/element/{e}/clear", {}); wd("POST", f"{S}/element/{e}/value", {"text": text})
def click(sel): wd("POST", f"{S}/element/{el(sel)}/click", {})
def shot(name):
    time.sleep(0.3)
    open(f"{out}-{name}.png", "wb").write(base64.b64decode(wd("GET", S + "/screenshot")))
def code_button():
    # the old page had a submit button per form; the new one #second-go
    return "#second-go" if js("return !!document.getElementById('second-go');") else "#second-totp button[type=submit]"
wd("POST", S + "/url", {"url": f"http://localhost:{port}/"})
def signin():
    shown("#signin-email"); typ("#signin-email", email); typ("#signin-password", pw); click("#signin-submit")
    shown("#second-methods button")
def second(code):
    typ("#totp-code", code); click(code_button()); shown("#signout")
signin(); second(fresh())
click("#signout"); shown("#signin-email")
signin(); shot("second")
second(fresh()); shot("account")
wd("DELETE", S)
drv.kill(); srv.terminate(); srv.wait(); shutil.rmtree(d)
print("ok", out)
