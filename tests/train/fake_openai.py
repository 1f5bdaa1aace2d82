"""A small OpenAI-compatible HTTP server on loopback: files + fine_tuning.jobs + models, for the official client.

It speaks the real wire format (multipart uploads, cursor pagination newest-first, error bodies, Bearer auth), so
the code under test runs unmodified against it. Jobs advance one state per GET of the job, which makes tests
deterministic whatever the poll interval:

    validating_files -> queued -> running (one training step per poll, metrics events, a checkpoint per epoch)
    -> succeeded (fine_tuned_model set)  |  failed (when ``fail_with`` is set)  |  cancelled (POST .../cancel)

``hold = True`` keeps a running job from advancing (to interrupt a watcher mid-job). Everything received is
recorded (``uploads``, ``job_requests``, ``requests``) for assertions.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PAGE_CAP = 2  # the server's own page-size cap, so clients must follow `has_more` like against the real API


class FakeOpenAI:
    def __init__(self, api_key: str = "sk-test-fake-0123456789", models: tuple[str, ...] = (
            "gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06"), fail_with: dict[str, Any] | None = None):
        self.api_key = api_key
        self.models = models
        self.fail_with = fail_with
        self.hold = False
        self.files: dict[str, dict[str, Any]] = {}
        self.uploads: list[dict[str, Any]] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.job_requests: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, int]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    def __enter__(self) -> "FakeOpenAI":
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def _id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):06d}"

    # -- endpoints -------------------------------------------------------------------------------------------
    def upload(self, fields: dict[str, tuple[str | None, bytes]]) -> tuple[int, dict[str, Any]]:
        if "file" not in fields or fields.get("purpose", (None, b""))[1] != b"fine-tune":
            return 400, _error("file and purpose=fine-tune are required", "invalid_request_error")
        filename, content = fields["file"]
        file = {"id": self._id("file"), "object": "file", "bytes": len(content), "created_at": int(time.time()),
                "filename": filename, "purpose": "fine-tune", "status": "processed", "status_details": None}
        self.files[file["id"]] = {**file, "content": content}
        self.uploads.append({**file, "content": content})
        return 200, file

    def create_job(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.job_requests.append(body)
        for key in ("training_file", "validation_file"):
            if body.get(key) is not None and body[key] not in self.files:
                return 400, _error(f"invalid file id {body[key]!r}", "invalid_request_error", param=key)
        if body.get("model") not in self.models:
            return 400, _error(f"model {body.get('model')!r} cannot be fine-tuned", "invalid_request_error")
        hyper = (body.get("method") or {}).get("supervised", {}).get("hyperparameters", {})
        train_lines = self.files[body["training_file"]]["content"].decode().strip().splitlines()
        epochs = hyper.get("n_epochs") if isinstance(hyper.get("n_epochs"), int) else 3
        batch = hyper.get("batch_size") if isinstance(hyper.get("batch_size"), int) else 1
        job_id = self._id("ftjob")
        job = {
            "id": job_id, "object": "fine_tuning.job", "created_at": int(time.time()), "model": body["model"],
            "organization_id": "org-fake", "status": "validating_files", "training_file": body["training_file"],
            "validation_file": body.get("validation_file"), "result_files": [], "seed": body.get("seed", 42),
            "fine_tuned_model": None, "finished_at": None, "trained_tokens": None, "error": None,
            "hyperparameters": {"n_epochs": epochs, "batch_size": batch,
                                "learning_rate_multiplier": lr if isinstance(lr := hyper.get("learning_rate_multiplier"),
                                                                             float) else 1.8},
            "method": body.get("method"), "suffix": body.get("suffix"),
        }
        self.jobs[job_id] = {"job": job, "events": [], "checkpoints": [], "step": 0,
                             "steps_per_epoch": math.ceil(len(train_lines) / batch),
                             "tokens": sum(len(line.encode()) for line in train_lines) // 4}
        self._event(job_id, "info", "Created fine-tuning job")
        self._event(job_id, "info", "Validating training file")
        return 200, _public(job)

    def retrieve_job(self, job_id: str) -> tuple[int, dict[str, Any]]:
        state = self.jobs[job_id]
        job = state["job"]
        if job["status"] == "validating_files":
            if self.fail_with:
                job.update(status="failed", error=dict(self.fail_with), finished_at=int(time.time()))
                self._event(job_id, "error", f"Training file validation failed: {self.fail_with['message']}")
            else:
                job["status"] = "queued"
                self._event(job_id, "info", "Files validated, moving job to queued state")
        elif job["status"] == "queued":
            job["status"] = "running"
            self._event(job_id, "info", "Fine-tuning job started")
        elif job["status"] == "running" and not self.hold:
            self._step(job_id, state)
        return 200, _public(job)

    def _step(self, job_id: str, state: dict[str, Any]) -> None:
        job = state["job"]
        total = state["steps_per_epoch"] * job["hyperparameters"]["n_epochs"]
        state["step"] += 1
        step = state["step"]
        loss = round(2.0 / (1 + step), 4)
        metrics = {"step": step, "total_steps": total, "train_loss": loss, "train_mean_token_accuracy": 0.5}
        if step % state["steps_per_epoch"] == 0:
            metrics.update(valid_loss=round(loss * 1.1, 4), valid_mean_token_accuracy=0.45)
        self._event(job_id, "info", f"Step {step}/{total}: training loss={loss}", type_="metrics", data=metrics)
        if step % state["steps_per_epoch"] == 0:
            model = f"ft:{job['model']}:org-fake:{job['suffix'] or ''}:{job_id[-6:]}:ckpt-step-{step}"
            state["checkpoints"].append({
                "id": self._id("ftckpt"), "object": "fine_tuning.job.checkpoint", "created_at": int(time.time()),
                "fine_tuned_model_checkpoint": model, "fine_tuning_job_id": job_id, "step_number": step,
                "metrics": {"step": step, "train_loss": loss, "valid_loss": metrics["valid_loss"],
                            "full_valid_loss": metrics["valid_loss"], "train_mean_token_accuracy": 0.5}})
            self._event(job_id, "info", f"Checkpoint created at step {step}")
        if step == total:
            job.update(status="succeeded", finished_at=int(time.time()),
                       fine_tuned_model=f"ft:{job['model']}:org-fake:{job['suffix'] or ''}:{job_id[-6:]}",
                       trained_tokens=state["tokens"] * job["hyperparameters"]["n_epochs"])
            self._event(job_id, "info", f"New fine-tuned model created: {job['fine_tuned_model']}")
            self._event(job_id, "info", "The job has successfully completed")

    def cancel_job(self, job_id: str) -> tuple[int, dict[str, Any]]:
        job = self.jobs[job_id]["job"]
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return 400, _error(f"job {job_id} has already completed: {job['status']}", "invalid_request_error")
        job.update(status="cancelled", finished_at=int(time.time()))
        self._event(job_id, "info", "Job cancelled")
        return 200, _public(job)

    def _event(self, job_id: str, level: str, message: str, type_: str = "message", data: Any = None) -> None:
        self.jobs[job_id]["events"].append({"id": self._id("ftevent"), "object": "fine_tuning.job.event",
                                            "created_at": int(time.time()), "level": level, "message": message,
                                            "type": type_, "data": data})

    def page(self, items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
        """Newest first; ``after`` continues past that id, ``limit`` capped at PAGE_CAP."""
        newest_first = list(reversed(items))
        ids = [item["id"] for item in newest_first]
        start = ids.index(query["after"]) + 1 if query.get("after") in ids else 0
        limit = min(int(query.get("limit", 20)), PAGE_CAP)
        chunk = newest_first[start:start + limit]
        return {"object": "list", "data": chunk, "has_more": start + limit < len(items)}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAI
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes; avoid 40 ms delayed-ACK stalls

    def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures, not access logs
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        self.fake.requests.append((self.command, self.path, status))  # before replying: the client may assert next
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _route(self) -> None:
        body = self._body()
        if self.headers.get("Authorization") != f"Bearer {self.fake.api_key}":
            self._send(401, _error("Incorrect API key provided.", "invalid_request_error", code="invalid_api_key"))
            return
        path, _, raw_query = self.path.partition("?")
        query = dict(pair.split("=", 1) for pair in raw_query.split("&") if "=" in pair)
        fake = self.fake
        with fake._lock:
            route = (self.command, path)
            if route == ("GET", "/v1/models"):
                self._send(200, {"object": "list", "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "system"} for m in fake.models]})
            elif route == ("POST", "/v1/files"):
                self._send(*fake.upload(_multipart(self.headers["Content-Type"], body)))
            elif self.command == "GET" and (m := re.fullmatch(r"/v1/files/([\w-]+)", path)):
                file = fake.files.get(m[1])
                self._send(*((200, {k: v for k, v in file.items() if k != "content"}) if file else
                             (404, _error(f"No such File object: {m[1]}", "invalid_request_error"))))
            elif route == ("POST", "/v1/fine_tuning/jobs"):
                self._send(*fake.create_job(json.loads(body)))
            elif m := re.fullmatch(r"/v1/fine_tuning/jobs/([\w-]+)(/events|/checkpoints|/cancel)?", path):
                job_id, tail = m[1], m[2]
                if job_id not in fake.jobs:
                    self._send(404, _error(f"Could not find fine-tune: {job_id}", "invalid_request_error"))
                elif (self.command, tail) == ("GET", None):
                    self._send(*fake.retrieve_job(job_id))
                elif (self.command, tail) == ("GET", "/events"):
                    self._send(200, fake.page(fake.jobs[job_id]["events"], query))
                elif (self.command, tail) == ("GET", "/checkpoints"):
                    self._send(200, fake.page(fake.jobs[job_id]["checkpoints"], query))
                elif (self.command, tail) == ("POST", "/cancel"):
                    self._send(*fake.cancel_job(job_id))
                else:
                    self._send(405, _error("method not allowed", "invalid_request_error"))
            else:
                self._send(404, _error(f"no route {self.command} {path}", "invalid_request_error"))

    do_GET = do_POST = _route


def _public(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if k != "suffix"}


def _error(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """name -> (filename, bytes) of a multipart/form-data body."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    return {part.get_param("name", header="content-disposition"): (part.get_filename(), part.get_payload(decode=True))
            for part in message.iter_parts()}
