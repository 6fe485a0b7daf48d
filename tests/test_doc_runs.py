"""docs/quickstart.md and the Jaeger part of docs/tracing.md, run as a reader would.

Block after block in one folder, against stand-ins on loopback: the quickstart from "A first
real upstream" on (a fake OpenAI upstream), and tracing's Jaeger section (an OTLP/HTTP
receiver standing in for Jaeger). A block that follows a link to ``examples/…`` is saved under
that file's name; ``lockgate serve`` runs in the background until the page ends; ``python``
blocks run with this interpreter; a ``text`` block right after a command is output that
command must print; ``docker`` lines start what the stand-ins replace (not run). Only
addresses are swapped (the OpenAI URL, port 4000, the collector's 4318, the reader's folder)
and the key ``keys create`` printed replaces ``lg-…``; the gateway's key cache is shortened so
a new key closes open mode at once.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.doc_blocks import DOCS, SHELL, Block, commands, program, section
from tests.gateway.servers import OTLPReceiver, ServerThread
from tests.gateway.upstream import Upstream
from tests.test_doc_examples import _free_port

# litellm, imported by the gateway for its cost map, makes pydantic chatty
pytestmark = pytest.mark.filterwarnings("ignore:.*ReadOnly.*qualifier:UserWarning")

OPENAI_URL = "https://api.openai.com/v1"
COLLECTOR_URL = "http://127.0.0.1:4318"
READER_FOLDER = "/home/you/quickstart"


@dataclass
class Step:
    block: Block
    output: str
    log: Path | None = None  # a server's log, read when its output is wanted


@dataclass
class PageRun:
    """Runs a page's blocks in order in ``folder``, as a reader at a shell would."""

    folder: Path  # where the reader is (a `cd` moves it)
    scratch: Path  # the test's own files: logs, the shell's state between blocks
    env: dict[str, str]
    swaps: dict[str, str]
    port: int
    learn: Callable[[str], dict[str, str]] = lambda output: {}
    steps: list[Step] = field(default_factory=list)
    servers: list[tuple[subprocess.Popen[str], Path]] = field(default_factory=list)

    def swap(self, text: str) -> str:
        for old, new in self.swaps.items():
            text = text.replace(old, new)
        return text

    def run(self, section: list[Block]) -> None:
        for block in section:
            if block.link is not None and block.lang in ("yaml", "json", "toml"):
                (self.folder / Path(block.link).name).write_text(self.swap(block.text))
            elif block.lang == "text" and self.steps:
                self._expect(self.steps[-1], self.swap(block.text))
            elif block.lang == "python":
                self._finished(block, [sys.executable, "-c", self.swap(block.text)])
            elif block.lang in SHELL and not _stand_in(block):
                self._shell(block)

    def _shell(self, block: Block) -> None:
        script = self.swap(block.text)
        programs = [c.words[:2] for c in commands(block)]
        if ["lockgate", "serve"] in programs:
            assert len(programs) == 1, f"{block.where}: `lockgate serve` gets a block of its own"
            self._serve(block, script)
            return
        env, cwd = self.scratch / "shell.env", self.scratch / "shell.cwd"
        script += f'\nenv -0 > "{env}"; pwd > "{cwd}"\n'  # what the next block starts from
        self._finished(block, ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script])
        pairs = env.read_text().split("\0")
        self.env = dict(p.split("=", 1) for p in pairs if "=" in p)
        self.folder = Path(cwd.read_text().strip())

    def _finished(self, block: Block, args: list[str]) -> None:
        done = subprocess.run(
            args, cwd=self.folder, env=self.env, text=True, capture_output=True, timeout=120
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, (
            f"{block.where} exited {done.returncode}:\n{output}{self.logs()}"
        )
        self.steps.append(Step(block, output))
        self.swaps.update(self.learn(output))

    def _serve(self, block: Block, script: str) -> None:
        log = self.scratch / f"serve-{len(self.servers)}.log"
        process = subprocess.Popen(
            ["bash", "--noprofile", "--norc", "-c", f"exec {script.strip()}"],
            cwd=self.folder, env=self.env, text=True, start_new_session=True,
            stdout=log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.servers.append((process, log))
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"{block.where}: lockgate serve exited{self.logs()}"
            assert time.monotonic() < deadline, f"{block.where}: not ready in 60 s{self.logs()}"
            with contextlib.suppress(OSError):
                url = f"http://127.0.0.1:{self.port}/readyz"
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        break
            time.sleep(0.1)
        self.steps.append(Step(block, "", log))

    def _expect(self, step: Step, expected: str) -> None:
        output = step.log.read_text() if step.log else step.output
        for line in expected.splitlines():
            wanted = " ".join(line.split())
            assert wanted in " ".join(output.split()), (
                f"{step.block.where} printed no `{line}`:\n{output}"
            )

    def logs(self) -> str:
        return "".join(f"\n--- {log.name}:\n{log.read_text()}" for _, log in self.servers)

    def stop(self) -> None:
        for process, _ in self.servers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(15)


def _stand_in(block: Block) -> bool:
    """Lines that start outside services (Jaeger, Phoenix): the test runs a stand-in."""
    return any(program(c.words) == "docker" for c in commands(block))


def _reader_env(home: Path, data_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LOCKGATE_", "XDG_", "OPENAI_", "OTEL_"))}  # fmt: skip
    env.update({
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "LOCKGATE_DATA_DIR": str(data_dir),  # the reader's user data directory
        "LOCKGATE_SERVER__PORT": str(port),
        "LOCKGATE_GATEWAY__KEY_CACHE_TTL_S": "0.2",
    })  # fmt: skip
    return env


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    stub = Upstream()
    with ServerThread(stub.app) as server:
        stub.url = server.url  # type: ignore[attr-defined]
        yield stub


@pytest.fixture
def page_run(tmp_path: Path, upstream: Upstream) -> Iterator[PageRun]:
    port = _free_port()
    home, scratch = tmp_path / "home", tmp_path / "scratch"
    home.mkdir()
    scratch.mkdir()
    swaps = {
        OPENAI_URL: f"{upstream.url}/v1",  # type: ignore[attr-defined]
        "127.0.0.1:4000": f"127.0.0.1:{port}",
        "--port 4000": f"--port {port}",
        READER_FOLDER: str(home / "quickstart"),
    }
    env = _reader_env(home, tmp_path / "data", port)
    run = PageRun(home, scratch, env, swaps, port)
    yield run
    run.stop()


def _key_printed(output: str) -> dict[str, str]:
    match = re.search(r"\blg-[A-Za-z0-9_-]{40}\b", output)
    return {"lg-…": match.group(0)} if match else {}


@pytest.mark.slow
def test_the_quickstart_runs(page_run: PageRun, upstream: Upstream) -> None:
    page = DOCS / "quickstart.md"
    page_run.learn = _key_printed
    page_run.run(section(page, "## 2. A first real upstream"))

    assert "lg-…" in page_run.swaps, "the quickstart creates a key"
    chats = [r for r in upstream.requests if r["path"] == "/v1/chat/completions"]
    assert len(chats) >= 3, chats
    # the key the reader exported went to the upstream, and only there
    assert {r["headers"].get("authorization") for r in chats} == {"Bearer sk-..."}
    assert {r["body"]["model"] for r in chats} == {"gpt-4o-mini"}
    rendered = [
        r["body"]["messages"][0] for r in chats if r["body"]["messages"][0]["role"] == "system"
    ]
    assert rendered and "lockgate" in rendered[0]["content"], "the registry prompt was applied"


@pytest.mark.slow
def test_the_tracing_page_runs(page_run: PageRun, upstream: Upstream) -> None:
    page = DOCS / "tracing.md"
    receiver = OTLPReceiver()
    try:
        page_run.swaps[COLLECTOR_URL] = receiver.base_url
        page_run.env["OTEL_RESOURCE_ATTRIBUTES"] = "openinference.project.name=lockgate"
        page_run.run(section(page, "## Jaeger", "## Phoenix"))
        deadline = time.monotonic() + 15
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        page_run.stop()
        receiver.close()
    spans = [
        (resource.resource, span)
        for message in receiver.requests
        for resource in message.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    assert [s.name for _, s in spans] == ["chat gpt-4o-mini"], page_run.logs()
    resource = {a.key: a.value.string_value for a in spans[0][0].attributes}
    assert resource["service.name"] == "lockgate"
    assert resource["openinference.project.name"] == "lockgate"  # Phoenix's project
