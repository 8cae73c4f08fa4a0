"""FakeEchoServer: a named stand-in for a server whose completions `echo` is correct (vLLM).

vLLM cannot run on this machine and llama-cpp-python's echo fails valuescope's consistency
check (its echoed log-probabilities are shifted by one token on models without BOS), so the
echo path of the server backend is tested against this fake: a loopback HTTP server that
answers the OpenAI completions and chat endpoints from a local transformers model, with echoed
prompt tokens as vLLM reports them (contiguous `text_offset`, one top alternative per token).
Only what the backend uses is implemented.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import torch

from testkit.llama_server import free_port


class FakeEchoServer:
    def __init__(self, model: Any, tokenizer: Any, name: str = "fake-echo") -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.port = free_port()
        self._lock = threading.Lock()
        self.paths: list[str] = []
        """Every request's path and query, as received."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                fake.paths.append(self.path)
                self._send({"object": "list", "data": [{"id": fake.name, "object": "model"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake._lock:
                    fake.paths.append(self.path)
                    if urlsplit(self.path).path.endswith("/chat/completions"):
                        answer = fake.chat(body)
                    else:
                        answer = fake.completion(body)
                self._send(answer)

            def _send(self, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FakeEchoServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @torch.inference_mode()
    def _logprobs(self, ids: list[int]) -> torch.Tensor:
        logits = self.model(input_ids=torch.tensor([ids])).logits[0].float()
        return torch.log_softmax(logits, dim=-1)

    def _text(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids))

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = str(body["prompt"])
        encoded = self.tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(encoded["input_ids"])
        ends = [int(end) for _, end in encoded["offset_mapping"]]
        logprobs = self._logprobs(ids)
        generated = int(logprobs[-1].argmax())
        gen_logprob = float(logprobs[-1, generated])
        gen_text = self._text([generated])
        usage = {"prompt_tokens": len(ids), "completion_tokens": 1}
        if not body.get("echo"):
            lp = {"tokens": [gen_text], "token_logprobs": [gen_logprob],
                  "text_offset": [len(prompt)], "top_logprobs": [{gen_text: gen_logprob}]}  # fmt: skip
            return {"choices": [{"text": gen_text, "logprobs": lp}], "usage": usage}
        starts = [0, *ends[:-1]]
        tokens = [prompt[a:b] for a, b in zip(starts, ends, strict=True)]
        values: list[float | None] = [None]
        tops: list[dict[str, float] | None] = [None]
        for i in range(1, len(ids)):
            row = logprobs[i - 1]
            best = int(row.argmax())
            values.append(float(row[ids[i]]))
            tops.append({self._text([best]): float(row[best]), tokens[i]: float(row[ids[i]])})
        lp = {
            "tokens": [*tokens, gen_text],
            "token_logprobs": [*values, gen_logprob],
            "text_offset": [*starts, len(prompt)],
            "top_logprobs": [*tops, {gen_text: gen_logprob}],
        }
        return {"choices": [{"text": prompt + gen_text, "logprobs": lp}], "usage": usage}

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        text = self.tokenizer.apply_chat_template(
            body["messages"], tokenize=False, add_generation_prompt=True
        )
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        row = self._logprobs(ids)[-1]
        top = torch.topk(row, int(body.get("top_logprobs") or 1))
        first = int(top.indices[0])
        content = self._text([first])
        choice: dict[str, Any] = {"message": {"role": "assistant", "content": content}}
        if body.get("logprobs"):
            alternatives = [
                {"token": self._text([int(i)]), "logprob": float(v)}
                for v, i in zip(top.values, top.indices, strict=True)
            ]
            choice["logprobs"] = {"content": [{"token": content, "logprob": float(top.values[0]),
                                               "top_logprobs": alternatives}]}  # fmt: skip
        return {"choices": [choice], "usage": {"prompt_tokens": len(ids), "completion_tokens": 1}}
