"""A real local HTTP server that speaks OpenAI's streaming chat-completions protocol, for the judge.

It runs on its own thread (the code under test starts its own event loops) and
answers each request with the next reply of a script, cycling; a reply of
`HTTP_500` answers with a server error instead. Every request's JSON body is kept.
"""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HTTP_500 = "<http 500>"


class JudgeServer:
    """`with JudgeServer(["Rating: [[7]]", "no rating"]) as s: s.base_url`"""

    def __init__(self, replies: list[str]):
        self.replies = replies
        self.requests: list[dict] = []
        self._next = itertools.cycle(range(len(replies)))
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append({"path": self.path, "body": body})
                    reply = server.replies[next(server._next)]
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                if reply == HTTP_500:
                    data = b'{"error": {"message": "overloaded"}}'
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                words = reply.split(" ")
                for i, word in enumerate(words):
                    delta = {"content": word if i == 0 else " " + word}
                    chunk = {
                        "id": "x",
                        "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": delta}],
                    }
                    self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())
                end = {"id": "x", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                self._chunk(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
                self.wfile.write(b"0\r\n\r\n")

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> JudgeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
