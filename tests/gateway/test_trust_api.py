"""Trust boundaries of ``/v1/files`` and ``/v1/fine_tuning/jobs`` (issue 10): the HTTP API takes
file ids and registry references, never server paths; a request's ``metadata.lockgate`` sets
hyper-parameters and LoRA settings only; authentication comes before any body is read, and an
upload has a cap. Real gateway on loopback, auth on, keys created through the registry; the
clients are the official ``openai`` SDK, httpx and a raw socket (to see what the server reads)."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.finetune.conftest import chat_rows, write_jsonl
from tests.gateway.conftest import Gateway, StartGateway

UPLOAD_CAP = 1024 * 1024  # gateway.requests.max_upload_bytes in this module
BIG = 60 * 1024 * 1024  # the 60 MB upload of the finding


@pytest.fixture(scope="module")
def gw(start_gateway: StartGateway, tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    gateway = start_gateway(auth="required", requests={"max_upload_bytes": UPLOAD_CAP})
    base = tmp_path_factory.mktemp("base") / "tiny"
    base.mkdir()
    (base / "config.json").write_text(
        json.dumps({"model_type": "llama", "max_position_embeddings": 128})
    )
    gateway.registry.models.register("base", "hf", path=base)
    return gateway


@pytest.fixture(scope="module")
def keys(gw: Gateway) -> dict[str, Any]:
    reg = gw.registry
    return {
        "writer": reg.keys.create("ml", scopes=["registry:read", "registry:write"]),
        "labeller": reg.keys.create(
            "release", scopes=["registry:read", "registry:write", "registry:label"]
        ),
        "reader": reg.keys.create("viewer", scopes=["registry:read"]),
    }


def _client(gw: Gateway, secret: str | None) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=secret or "", max_retries=0)


@pytest.fixture(scope="module")
def writer(gw: Gateway, keys: dict[str, Any]) -> openai.OpenAI:
    return _client(gw, keys["writer"].secret)


@pytest.fixture(scope="module")
def training_id(writer: openai.OpenAI, tmp_path_factory: pytest.TempPathFactory) -> str:
    data = write_jsonl(tmp_path_factory.mktemp("data") / "train.jsonl", chat_rows())
    return writer.files.create(file=data.open("rb"), purpose="fine-tune").id


def _error(exc: pytest.ExceptionInfo[openai.APIStatusError]) -> dict[str, Any]:
    body = exc.value.response.json()
    assert set(body) == {"error"}
    return dict(body["error"])


# --------------------------------------------------------------- finding 3: server paths


def test_training_file_is_an_uploaded_file_id_never_a_server_path(
    gw: Gateway, writer: openai.OpenAI, tmp_path: Path
) -> None:
    on_server = write_jsonl(tmp_path / "secret-train.jsonl", chat_rows())
    files_before, jobs_before = len(gw.registry.files.list()), len(gw.registry.jobs.list())
    answers = []
    for path in ("/etc/passwd", str(on_server), str(tmp_path / "missing.jsonl")):
        for field in ("training_file", "validation_file"):
            body: dict[str, Any] = {"model": "registry:base@latest", "training_file": path}
            if field == "validation_file":
                body = {**body, "training_file": "file-doesnotexist", "validation_file": path}
            with pytest.raises(openai.BadRequestError) as err:
                writer.fine_tuning.jobs.create(**body)
            error = _error(err)
            assert error["param"] == field
            assert "file id" in error["message"] and "/v1/files" in error["message"]
            assert "root" not in error["message"] and "line" not in error["message"]
            answers.append((field, error["message"].replace(path, "PATH")))
    # one answer per field, whether the path exists (and parses) or not: no existence probe
    assert len(set(answers)) == 2, answers
    # nothing read from the server's disk: no upload made on the caller's behalf, no job
    assert len(gw.registry.files.list()) == files_before
    assert len(gw.registry.jobs.list()) == jobs_before


def test_an_unknown_file_id_says_nothing_about_the_filesystem(
    writer: openai.OpenAI, training_id: str
) -> None:
    for ref in ("file-0123456789abcdef01234567", "file-../../../etc/passwd"):
        with pytest.raises(openai.BadRequestError) as err:
            writer.fine_tuning.jobs.create(model="registry:base@latest", training_file=ref)
        error = _error(err)
        assert error["param"] == "training_file" and "no uploaded file" in error["message"]
        assert "such file" not in error["message"]
    with pytest.raises(openai.BadRequestError) as err:
        writer.fine_tuning.jobs.create(
            model="registry:base@latest", training_file=training_id, validation_file="file-nope"
        )
    assert _error(err)["param"] == "validation_file"


def test_model_is_a_registry_model_never_a_server_path(
    gw: Gateway, writer: openai.OpenAI, training_id: str, tmp_path: Path
) -> None:
    model_dir = tmp_path / "model-on-server"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"model_type": "llama"}')
    jobs_before = len(gw.registry.jobs.list())
    answers = []
    for path in (str(model_dir), str(tmp_path / "missing-model"), "/etc", "./" + model_dir.name):
        with pytest.raises(openai.BadRequestError) as err:
            writer.fine_tuning.jobs.create(model=path, training_file=training_id)
        error = _error(err)
        assert "registry" in error["message"], error
        assert "config.json" not in error["message"] and "directory" not in error["message"]
        answers.append(error["message"].replace(path, "PATH"))
    assert len(set(answers)) == 1, answers
    assert len(gw.registry.jobs.list()) == jobs_before
    # a registered model's plain name is a registry reference too, pinned to its version
    job = writer.fine_tuning.jobs.create(model="base", training_file=training_id)
    assert job.model == "registry:base@1" and job.status == "queued"
    writer.fine_tuning.jobs.cancel(job.id)


def test_a_path_cannot_be_slipped_in_through_metadata(
    gw: Gateway, writer: openai.OpenAI, training_id: str, tmp_path: Path
) -> None:
    on_server = write_jsonl(tmp_path / "t.jsonl", chat_rows())
    jobs_before = len(gw.registry.jobs.list())
    for key, value in (
        ("training_file", str(on_server)),
        ("validation_file", str(on_server)),
        ("base_model", str(tmp_path)),
    ):
        with pytest.raises(openai.BadRequestError) as err:
            writer.fine_tuning.jobs.create(
                model="registry:base@latest",
                training_file=training_id,
                metadata={"lockgate": json.dumps({key: value})},
            )
        assert _error(err)["param"] == f"metadata.lockgate.{key}"
    assert len(gw.registry.jobs.list()) == jobs_before


# ----------------------------------------------- finding 4: metadata.lockgate and labels


def test_metadata_cannot_gate_label_or_redirect_a_job(
    gw: Gateway, writer: openai.OpenAI, training_id: str, tmp_path: Path
) -> None:
    """The attack of the finding: suffix naming a gated production model, a suite uploaded as
    a blob (its store path is predictable) and label production, from a registry:write key."""
    reg = gw.registry
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    reg.models.register("prod-bot", "lora", {"base_model": "registry:base@1"}, path=adapter)
    reg.labels.set("model", "prod-bot", "production", 1)  # gated or not, no request may move it
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: support-quality\nscorers: [{name: builtins:print}]\n")
    blob = writer.files.create(file=suite.open("rb"), purpose="evals")
    suite_path = reg.artifacts._blob(reg.files.get(blob.id).digest)  # type: ignore[attr-defined]
    assert Path(suite_path).is_file()  # what the attacker could guess
    jobs_before = len(reg.jobs.list())

    attacks: list[tuple[dict[str, Any], str]] = [
        ({"eval": {"suite": suite_path, "label": "production"}}, "eval"),
        ({"eval": {"suite": suite_path}}, "eval"),
        ({"label": "production"}, "label"),
        ({"output_dir": "/tmp/elsewhere"}, "output_dir"),
        ({"output_model": "someone-elses-model"}, "output_model"),
        ({"suffix": "someone-elses-model"}, "suffix"),
        ({"gpus": 8}, "gpus"),
        ({"executor": "kubernetes"}, "executor"),
        ({"submitted_by": {"via": "cli", "principal": "root", "name": "root",
                           "holds_label_scope": True}}, "submitted_by"),
    ]  # fmt: skip
    for extra, key in attacks:
        for metadata in ({"lockgate": json.dumps(extra)}, {"lockgate": extra}):
            with pytest.raises(openai.BadRequestError) as err:
                writer.fine_tuning.jobs.create(
                    model="registry:base@latest",
                    training_file=training_id,
                    suffix="prod-bot",
                    metadata=metadata,  # type: ignore[arg-type]
                )
            error = _error(err)
            assert error["param"] == f"metadata.lockgate.{key}", (key, error)
            assert key in error["message"] and "lora" in error["message"], error
    assert len(reg.jobs.list()) == jobs_before
    assert reg.models.get("prod-bot@production").version == 1


def test_metadata_sets_hyperparameters_and_lora_settings(
    gw: Gateway, writer: openai.OpenAI, training_id: str
) -> None:
    settings = {
        "lora": {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]},
        "training": {"learning_rate": 1e-4, "epochs": 2, "batch_size": 2, "max_seq_length": 64},
    }
    job = writer.fine_tuning.jobs.create(
        model="registry:base@latest",
        training_file=training_id,
        suffix="tuned-bot",
        metadata={"lockgate": json.dumps(settings)},
    )
    spec = gw.registry.jobs.get(job.id).spec
    assert spec["lora"]["r"] == 4 and spec["lora"]["target_modules"] == ["q_proj", "v_proj"]
    assert spec["training"]["max_seq_length"] == 64 and spec["training"]["epochs"] == 2
    assert spec["output_model"] == "tuned-bot" and spec["eval"] is None
    writer.fine_tuning.jobs.cancel(job.id)
    with pytest.raises(openai.BadRequestError) as err:
        writer.fine_tuning.jobs.create(
            model="registry:base@latest",
            training_file=training_id,
            metadata={"lockgate": json.dumps({"lora": {"r": 4, "bias": "all"}})},
        )
    assert "bias" in _error(err)["message"]


def test_the_job_records_who_submitted_it_and_whether_they_may_move_labels(
    gw: Gateway, keys: dict[str, Any], training_id: str
) -> None:
    for role, may_label in (("writer", False), ("labeller", True)):
        key = keys[role]
        job = _client(gw, key.secret).fine_tuning.jobs.create(
            model="registry:base@latest", training_file=training_id
        )
        stored = gw.registry.jobs.get(job.id)
        assert stored.spec["submitted_by"] == {
            "via": "http",
            "principal": key.id,
            "name": key.name,
            "holds_label_scope": may_label,
        }
        assert key.id in stored.created_by
        _client(gw, key.secret).fine_tuning.jobs.cancel(job.id)


def test_registry_label_is_a_scope_of_its_own(gw: Gateway, keys: dict[str, Any]) -> None:
    assert "registry:label" in keys["labeller"].scopes
    assert not keys["writer"].has_scope("registry:label")
    reader = _client(gw, keys["reader"].secret)
    with pytest.raises(openai.PermissionDeniedError, match="registry:write"):
        reader.fine_tuning.jobs.create(model="registry:base@latest", training_file="file-x")


# ----------------------------------------------- finding 11: authentication before the body


def _raw_request(gw: Gateway, head: str, body: bytes, *, wait: float = 5.0) -> tuple[bytes, int]:
    """Send the head, then the body in 64 KiB pieces while watching for an answer; returns
    what the server answered and how many body bytes had been sent when it did."""
    host, port = gw.url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        sock.sendall(head.encode())
        sock.setblocking(False)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock] if sent < len(body) else [], [],
                                                  0.05)  # fmt: skip
            if readable:
                sock.setblocking(True)
                answer = b""
                while b"\r\n\r\n" not in answer:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
                return answer, sent
            if writable:
                with contextlib.suppress(BlockingIOError):  # the buffer filled meanwhile
                    sent += sock.send(body[sent : sent + 65536])
    raise AssertionError(f"no answer within {wait} s after sending {sent} body bytes")


def _multipart_head(gw: Gateway, length: int | None, *, key: str | None = None,
                    expect: bool = False) -> str:  # fmt: skip
    lines = [
        "POST /v1/files HTTP/1.1",
        f"Host: {gw.url.removeprefix('http://')}",
        "Content-Type: multipart/form-data; boundary=lockgate-boundary",
        f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked",
    ]
    if key:
        lines.append(f"Authorization: Bearer {key}")
    if expect:
        lines.append("Expect: 100-continue")
    return "\r\n".join(lines) + "\r\n\r\n"


def _multipart_body(size: int) -> bytes:
    head = (
        b'--lockgate-boundary\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n'
        b'fine-tune\r\n--lockgate-boundary\r\nContent-Disposition: form-data; name="file"; '
        b'filename="big.jsonl"\r\nContent-Type: application/octet-stream\r\n\r\n'
    )
    tail = b"\r\n--lockgate-boundary--\r\n"
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_an_upload_without_a_key_is_refused_before_its_body_is_read(gw: Gateway) -> None:
    body = _multipart_body(BIG)
    files_before = len(gw.registry.files.list())
    answer, sent = _raw_request(gw, _multipart_head(gw, len(body)), body)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert sent < len(body) // 4, sent  # answered long before the 60 MB were sent
    # with Expect: 100-continue the server answers 401 without ever asking for the body
    answer, sent = _raw_request(gw, _multipart_head(gw, len(body), expect=True), b"")
    assert answer.startswith(b"HTTP/1.1 401") and sent == 0, answer[:200]
    answer, _ = _raw_request(gw, _multipart_head(gw, None), b"")  # chunked, no length given
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    with pytest.raises(openai.AuthenticationError):  # the SDK, with a key that is not one
        _client(gw, "lg-not-a-key").files.create(file=b"{}\n", purpose="fine-tune")
    assert len(gw.registry.files.list()) == files_before


def test_an_upload_over_the_cap_is_413(gw: Gateway, keys: dict[str, Any], tmp_path: Path) -> None:
    secret = keys["writer"].secret
    files_before = len(gw.registry.files.list())
    body = _multipart_body(BIG)
    # the declared length is checked up front: 413 before the body is read
    answer, sent = _raw_request(gw, _multipart_head(gw, len(body), key=secret), body)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert sent < len(body) // 4, sent
    # chunked (no length declared): 413 as soon as the cap is passed
    chunked = b"".join(
        f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        for piece in (body[i : i + 65536] for i in range(0, len(body), 65536))
    )
    answer, sent = _raw_request(gw, _multipart_head(gw, None, key=secret), chunked)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert sent < len(chunked) // 4, sent
    # through the SDK: an OpenAI-shaped 413 naming the setting
    big = tmp_path / "big.jsonl"
    big.write_bytes(b"x" * (UPLOAD_CAP + 1))
    with pytest.raises(openai.APIStatusError) as err:
        _client(gw, secret).files.create(file=big.open("rb"), purpose="fine-tune")
    assert err.value.status_code == 413
    assert "max_upload_bytes" in _error(err)["message"]
    assert len(gw.registry.files.list()) == files_before
    # just under the cap is fine, and comes back byte for byte
    small = tmp_path / "small.jsonl"
    small.write_bytes(b"y" * (UPLOAD_CAP - 4096))
    client = _client(gw, secret)
    upload = client.files.create(file=small.open("rb"), purpose="user_data")
    assert upload.bytes == small.stat().st_size and upload.filename == "small.jsonl"
    assert client.files.content(upload.id).read() == small.read_bytes()


def test_a_bad_upload_is_an_openai_shaped_400(gw: Gateway, keys: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {keys['writer'].secret}"}
    cases: list[dict[str, Any]] = [
        {"data": {"purpose": "fine-tune"}, "files": {"nofile": ("a.txt", b"x")}},
        {"files": {"file": ("a.jsonl", b"{}\n")}},
        {"data": {"purpose": "fine-tune"}, "files": {"file": ("a.jsonl", b"{}\n")},
         "headers": {"Content-Type": "multipart/form-data"}},  # no boundary
        {"json": {"purpose": "fine-tune", "file": "x"}},
        {"data": {"purpose": "nonsense"}, "files": {"file": ("a.jsonl", b"{}\n")}},
    ]  # fmt: skip
    for case in cases:
        extra = case.pop("headers", {})
        response = httpx.post(gw.url + "/v1/files", headers={**headers, **extra}, **case)
        assert response.status_code == 400, (case, response.text)
        error = response.json()["error"]
        assert error["message"] and error["type"] == "invalid_request_error", error


def test_a_jobs_request_is_authenticated_before_its_body_is_parsed(
    gw: Gateway, keys: dict[str, Any]
) -> None:
    url = gw.url + "/v1/fine_tuning/jobs"
    for content in (b"{not json", b"[1, 2]", b'{"model": 3}', b"x" * (5 * 1024 * 1024)):
        response = httpx.post(url, content=content, headers={"content-type": "application/json"})
        assert response.status_code == 401, (content[:20], response.text)
        assert response.json()["error"]["code"] == "invalid_api_key"
    inference = gw.registry.keys.create("app", scopes=["inference"]).secret
    response = httpx.post(
        url, content=b"{not json", headers={"authorization": f"Bearer {inference}"}
    )
    assert response.status_code == 403, response.text
    writer = {"authorization": f"Bearer {keys['writer'].secret}"}
    response = httpx.post(url, content=b"{not json", headers=writer)
    assert response.status_code == 400 and "JSON" in response.json()["error"]["message"]
    response = httpx.post(url, content=b"[1, 2]", headers=writer)
    assert response.status_code == 400, response.text
    response = httpx.post(url, content=b"x" * (5 * 1024 * 1024), headers=writer)
    assert response.status_code == 413, response.text
