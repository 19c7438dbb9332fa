"""A small fault-injecting OpenAI-compatible server on 127.0.0.1, for testing the retry layer.

Each request to /v1/chat/completions pops the next behaviour from a script:
`ok`, `429:<retry-after seconds>`, `500`, `503`, `400`, `hang:<seconds>`, `garbage`, `empty`.
When the script is empty it answers `ok`. It records each request's arrival time and headers.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultServer:
    def __init__(self, script: list[str] | None = None, reply: str = "fine"):
        self.script: deque[str] = deque(script or [])
        self.reply = reply
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                self._send(200, json.dumps({"data": [{"id": "fault"}]}))

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    action = server.script.popleft() if server.script else "ok"
                    server.requests.append(
                        {"t": time.monotonic(), "action": action, "headers": dict(self.headers), "body": body}
                    )
                kind, _, arg = action.partition(":")
                if kind == "ok":
                    self._send(200, json.dumps(completion(server.reply)))
                elif kind == "429":
                    self._send(429, json.dumps({"error": {"message": "slow down"}}), {"Retry-After": arg or "1"})
                elif kind in ("500", "503", "400"):
                    self._send(int(kind), json.dumps({"error": {"message": f"injected {kind}"}}))
                elif kind == "hang":
                    time.sleep(float(arg or 5))
                    try:
                        self._send(200, json.dumps(completion(server.reply)))
                    except OSError:
                        pass
                elif kind == "garbage":
                    self._send(200, '{"id": "x", "choices": [{"mess', {"Content-Type": "application/json"})
                elif kind == "empty":
                    self._send(200, json.dumps({"id": "x", "object": "chat.completion", "choices": []}))
                else:
                    raise ValueError(action)

            def _send(self, status: int, text: str, headers: dict | None = None):
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def completion(text: str) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": "fault",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
