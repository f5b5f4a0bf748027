"""A stand-in MT-bench judge: an OpenAI-compatible chat-completions server on 127.0.0.1 (a thread).

It recognises which MT-bench question and turn a FastChat grading prompt is about (the question's first
turn text is quoted in the prompt; FastChat's multi-turn templates hold "Conversation with User") and
answers with the rating the test chose for that (question, turn), in FastChat's `[[rating]]` format.
Ratings set to None get a reply without a rating, which FastChat records as score -1.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StubJudge:
    def __init__(self, questions: list[dict], ratings: dict[tuple[int, int], float | None], served_name="gpt-4"):
        self.questions, self.ratings, self.served_name = questions, dict(ratings), served_name
        self.requests: list[dict] = []  # (question_id, turn, reference_based) of every grading asked
        self.chats: list[str] = []  # the model name of every chat request, gradings or not
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    def _grade(self, prompt: str) -> str:
        turn = 2 if "Conversation with User" in prompt else 1
        matches = [q["question_id"] for q in self.questions if q["turns"][0] in prompt]
        if len(matches) != 1:
            return "I cannot tell which question this is."
        qid = matches[0]
        with self._lock:
            self.requests.append({"question_id": qid, "turn": turn, "reference": "Reference Answer" in prompt})
            rating = self.ratings.get((qid, turn))
        return "The answer is poor." if rating is None else f"Fair answer. Rating: [[{rating}]]"

    def _handler_class(self):
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": judge.served_name, "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with judge._lock:
                    judge.chats.append(request.get("model"))
                if not self.path.endswith("/chat/completions") or request.get("model") != judge.served_name:
                    self._send(404, {"error": {"message": f"no model {request.get('model')!r}", "type": "invalid"}})
                    return
                prompt = "\n".join(m["content"] for m in request["messages"] if m["role"] == "user")
                reply = judge._grade(prompt)
                self._send(200, {
                    "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": judge.served_name,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                })  # fmt: skip

        return Handler
