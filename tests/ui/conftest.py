"""The UI's end-to-end fixtures: ``lockgate serve`` on loopback and headless Chromium.

Chromium is Debian's package (``apt-get install chromium``; ``.ci/run`` installs it when it is
missing), driven by Playwright for Python with ``executable_path``: Playwright's own browser
downloads are never used. Without Chromium (or Playwright) these tests skip and say why.

Every page a test visits is screenshot into the artifacts folder
(``$LOCKGATE_UI_ARTIFACTS``, else ``build/ui-artifacts``; printed at the start) and checked
with axe-core (from the ``axe-playwright-python`` package, which ships ``axe.min.js``,
axe-core 4.12, MPL-2.0): no serious or critical violation.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
import yaml

from lockgate.registry import Registry, RegistrySettings

CHROMIUM = os.environ.get("LOCKGATE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("LOCKGATE_UI_ARTIFACTS") or ROOT / "build" / "ui-artifacts")
SECRET_VAR = "LOCKGATE_TEST_UI_SECRET"
SESSION_SECRET = "ui-test-secret-" + "x" * 40
BLOCKING = ("serious", "critical")


def _why_no_browser() -> str | None:
    if not Path(CHROMIUM).is_file():
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium; .ci/run does)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[dev]')"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = _why_no_browser()
    for item in items:
        needs = {"page", "browser"} & set(getattr(item, "fixturenames", ()))
        if "tests/ui/" in item.nodeid and needs:
            item.add_marker(pytest.mark.browser)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Keys:
    writer: str
    reader: str
    label_only: str  # inference only: no registry:read


@dataclass
class Served:
    """``lockgate serve`` on loopback with a registry of its own."""

    url: str
    process: subprocess.Popen[str]
    registry: Registry
    keys: Keys
    config: Path

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=30)
        return err


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class HasUrl(Protocol):
    url: str


def sign_in(page: Any, site: HasUrl, key: str) -> None:
    """Sign in through the sign-in form in the browser, as a user does."""
    page.goto(site.url + "/ui/sign-in")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/ui/prompts"))


def wait_for_text(
    page: Any, selector: str, done: Callable[[str], bool], timeout: float = 30
) -> str:
    """Poll the text of ``selector`` until ``done(text)``; returns it. (Playwright's
    ``wait_for_function`` polls with ``eval``, which the UI's Content-Security-Policy
    refuses, so it only works when the condition already holds.)"""
    deadline = time.monotonic() + timeout
    while not done(text := page.locator(selector).inner_text()):
        assert time.monotonic() < deadline, f"{selector} still reads {text!r}"
        time.sleep(0.05)
    return text


def registry_folder(
    factory: pytest.TempPathFactory, name: str, template: Path
) -> tuple[Path, RegistrySettings]:
    """A new folder holding an empty registry (a copy of the migrated SQLite template)."""
    folder = factory.mktemp(name)
    data = folder / "data"
    data.mkdir()
    shutil.copy(template, data / "registry.db")
    return folder, RegistrySettings(data_dir=data)


def launch(folder: Path, config: Path) -> tuple[str, subprocess.Popen[str]]:
    """``lockgate serve --config CONFIG`` on a free loopback port with the UI's session
    secret set, once it answers ``/healthz``: (its URL, the process)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    env[SECRET_VAR] = SESSION_SECRET
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "lockgate.gateway.cli", "serve", "--config", str(config),
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=folder, env=env, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"lockgate serve exited {process.returncode}: {err}")
        try:
            httpx.get(url + "/healthz", timeout=1).raise_for_status()
            return url, process
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "lockgate serve did not start"
            time.sleep(0.2)


def write_config(
    folder: Path, data_dir: Path, upstream_v1: str | None = None, model: str = "stub-model"
) -> Path:
    """``folder/lockgate.yaml`` for a UI test: the registry in ``data_dir``, short key and
    record delays, the UI's session secret from :data:`SECRET_VAR`, and with ``upstream_v1``
    a priced route ``gpt-test`` to ``model`` on that fake OpenAI upstream."""
    gateway: dict[str, Any] = {"key_cache_ttl_s": 0.2}
    if upstream_v1 is not None:
        deployment = {"provider": "openai", "model": model, "api_base": upstream_v1,
                      "api_key": "sk-upstream-0123456789abcdef"}  # fmt: skip
        gateway |= {
            "routes": {"gpt-test": {"deployments": [deployment]}},
            "prices": {model: {"input_per_million": 1.0, "output_per_million": 2.0}},
            "call_records": {"flush_interval_s": 0.05},
        }
    config = folder / "lockgate.yaml"
    config.write_text(yaml.safe_dump({
        "registry": {"data_dir": str(data_dir)}, "gateway": gateway,
        "ui": {"session_secret_env": SECRET_VAR, "session_ttl_s": 3600},
    }))  # fmt: skip
    return config


def start_serve(folder: Path, registry_settings: RegistrySettings, keys: Keys) -> Served:
    config = write_config(folder, registry_settings.data_dir)
    url, process = launch(folder, config)
    return Served(url, process, Registry(registry_settings, actor="tester"), keys, config)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Served]:
    """A served gateway with keys (read+write, read-only, inference-only) and two prompts."""
    folder, settings = registry_folder(tmp_path_factory, "ui", sqlite_template)
    seed = Registry(settings, actor="seed")
    try:
        writer = seed.keys.create("writer", scopes=["registry:read", "registry:write"])
        reader = seed.keys.create("reader", scopes=["registry:read"])
        inference = seed.keys.create("caller", scopes=["inference"])
        seed.prompts.push("support/greeting", "Hello {{ name }}.", {"temperature": 0.2},
                          message="first greeting", author="ana")  # fmt: skip
        seed.prompts.push(
            "support/greeting", "Hello {{ name }}!\nHow can I help with {{ product }}?",
            {"temperature": 0.3}, message="ask about the product", author="ben",
        )  # fmt: skip
        seed.labels.set("prompt", "support/greeting", "production", 1, force=True, reason="seed")
        chat = [
            {"role": "system", "content": "Summarise."},
            {"role": "user", "content": "{{ text }}"},
        ]
        seed.prompts.push("summarise", chat, message="chat prompt")
    finally:
        seed.close()
    keys = Keys(str(writer.secret), str(reader.secret), str(inference.secret))
    server = start_serve(folder, settings, keys)
    yield server
    server.registry.close()
    server.stop()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nUI screenshots and accessibility reports: {ARTIFACTS}")
    return ARTIFACTS


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if _why_no_browser():
        pytest.skip(_why_no_browser() or "")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


AXE_SOURCE: str | None = None


def axe_source() -> str:
    global AXE_SOURCE
    if AXE_SOURCE is None:
        AXE_SOURCE = (
            resources.files("axe_playwright_python").joinpath("axe.min.js").read_text("utf-8")
        )
    return AXE_SOURCE


def check_page(page: Any, artifacts: Path, name: str) -> list[dict[str, Any]]:
    """Screenshot the page as ``name.png`` and run axe-core on it; fails on a serious or
    critical violation (the report is written beside the screenshot)."""
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source() + "\n;undefined")
    result = page.evaluate(
        "async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
        " return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' '))})); }"
    )
    (artifacts / f"{name}.axe.yaml").write_text(yaml.safe_dump(result or "no violations"))
    blocking = [v for v in result if v["impact"] in BLOCKING]
    assert not blocking, f"{name}: accessibility violations: {blocking}"
    return list(result)
