"""A script that reaches a user's single-user server through the hub with only a hub API
token, as scripts, schedulers and editors (VS Code's remote Jupyter server) do with
JupyterHub: jupyter_server's REST API over HTTP and a kernel's channels over a WebSocket
(tornado's client, from the Jupyter venv). No cookie, no Origin header.

    python token_client.py HUB_URL USER TOKEN

Prints one JSON object: the status codes seen and the uid the kernel printed.
"""

import json
import sys
import urllib.error
import urllib.request
import uuid

from tornado import httpclient, ioloop, websocket

hub, user, token = sys.argv[1:4]
base = f"{hub}/user/{user}"
auth = {"Authorization": f"token {token}"}
out = {}


def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method, headers=dict(auth))
    if body is not None:
        req.data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


out["status"], status = call("GET", "/api/status")
out["status_has_kernels"] = "kernels" in (status or {})
nb = {"type": "notebook", "content": {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}}
out["save"], _ = call("PUT", "/api/contents/from-token.ipynb", nb)
out["start_kernel"], kernel = call("POST", "/api/kernels", {"name": "python3"})


async def run_cell():
    url = base.replace("http", "ws", 1) + f"/api/kernels/{kernel['id']}/channels"
    ws = await websocket.websocket_connect(httpclient.HTTPRequest(url, headers=dict(auth)))
    msg_id = uuid.uuid4().hex
    ws.write_message(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": user,
                   "session": uuid.uuid4().hex, "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": "import os; print(os.getuid())", "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    }))
    text = ""
    while True:
        m = json.loads(await ws.read_message())
        if m.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if m["msg_type"] == "stream":
            text += m["content"]["text"]
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    ws.close()
    return text.strip()


out["kernel_uid"] = int(ioloop.IOLoop.current().run_sync(run_cell, timeout=60))
out["delete_kernel"], _ = call("DELETE", f"/api/kernels/{kernel['id']}")
print(json.dumps(out))
