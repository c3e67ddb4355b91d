"""Drives the hub through nginx over https, as a browser would, on one of its host names:
log in with the form, wait for the server, load the JupyterLab page, start a kernel and run
1+1 over a wss:// kernel WebSocket. Host names ending in .test resolve to 127.0.0.1 (like
curl --resolve); the self-signed certificate is trusted through CAFILE.

    python client.py BASE_URL USER PASSWORD CAFILE

Exits 0 on success; otherwise prints what failed and exits 1. Used by tests/e2e/nginx.rs.
"""

import http.cookiejar
import json
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import websocket

base, user, password, cafile = sys.argv[1:5]

_getaddrinfo = socket.getaddrinfo


def _resolve(host, *args, **kwargs):
    if isinstance(host, str) and host.endswith(".test"):
        host = "127.0.0.1"
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _resolve
ctx = ssl.create_default_context(cafile=cafile)
jar = http.cookiejar.CookieJar()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


opener = urllib.request.build_opener(
    urllib.request.HTTPSHandler(context=ctx), urllib.request.HTTPCookieProcessor(jar), NoRedirect
)


def request(method, path, data=None, headers=None):
    h = {"Origin": base}
    h.update(headers or {})
    r = urllib.request.Request(base + path, data=data, method=method, headers=h)
    try:
        resp = opener.open(r, timeout=60)
    except urllib.error.HTTPError as e:
        resp = e
    return resp.status, resp.headers, resp.read()


def check(cond, what):
    if not cond:
        print(f"FAILED on {base}: {what}")
        sys.exit(1)


form = urllib.parse.urlencode({"username": user, "password": password, "next": ""}).encode()
status, headers, _ = request("POST", "/hub/login", form, {"Content-Type": "application/x-www-form-urlencoded"})
check(status == 303, f"login answered {status}")
set_cookie = headers.get("Set-Cookie", "")
check(set_cookie.startswith("__Host-hub-session=") and "Secure" in set_cookie, f"session cookie {set_cookie!r}")

deadline = time.time() + 90
while True:
    status, _, _ = request("GET", f"/user/{user}/api/status", headers={"Accept": "application/json"})
    if status == 200:
        break
    check(time.time() < deadline, f"server never answered through nginx (last {status})")
    time.sleep(0.3)

status, _, body = request("GET", f"/user/{user}/lab", headers={"Accept": "text/html"})
check(status == 200 and b"JupyterLab" in body, f"JupyterLab page: {status}")

xsrf = next((c.value for c in jar if c.name == "_xsrf"), None)
check(xsrf is not None, "jupyter-server set no _xsrf cookie on the lab page")
status, _, body = request(
    "POST", f"/user/{user}/api/kernels", json.dumps({"name": "python3"}).encode(),
    {"Content-Type": "application/json", "X-XSRFToken": xsrf},
)
check(status == 201, f"start kernel: {status} {body[:200]!r}")
kernel = json.loads(body)["id"]

cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
ws_url = base.replace("https://", "wss://") + f"/user/{user}/api/kernels/{kernel}/channels"
ws = websocket.create_connection(
    ws_url, header=[f"Cookie: {cookie}"], origin=base, sslopt={"ca_certs": cafile}, timeout=60
)
session = uuid.uuid4().hex
msg_id = uuid.uuid4().hex
ws.send(json.dumps({
    "header": {"msg_id": msg_id, "username": user, "session": session, "msg_type": "execute_request",
               "version": "5.3", "date": "2026-01-01T00:00:00Z"},
    "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
    "content": {"code": "1+1", "silent": False, "store_history": False, "user_expressions": {},
                "allow_stdin": False, "stop_on_error": True},
}))
result = None
while result is None:
    m = json.loads(ws.recv())
    if m.get("parent_header", {}).get("msg_id") == msg_id and m["msg_type"] == "execute_result":
        result = m["content"]["data"]["text/plain"]
ws.close()
check(result == "2", f"1+1 gave {result!r}")

# A WebSocket from another origin is refused, through nginx too.
try:
    websocket.create_connection(ws_url, header=[f"Cookie: {cookie}"], origin="https://evil.example",
                                sslopt={"ca_certs": cafile}, timeout=30)
    check(False, "a cross-origin WebSocket was accepted")
except websocket.WebSocketBadStatusException as e:
    check(e.status_code == 403, f"cross-origin WebSocket got {e.status_code}")
print(f"ok {base}")
