"""Browser fixtures: the portal served over real HTTP on a local port, driven by Debian's Chromium via Playwright."""

from __future__ import annotations

import io
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from devtools.demo import seed_demo_data
from portal.accounts.sms import ConsoleSms

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOTS = Path(
    os.environ.get("SCREENSHOT_DIR", Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots")
)
# Switch off everything that phones home: this machine has no network, and tests must not depend on one.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--metrics-recording-only",
    "--no-default-browser-check",
]


class SmsOutput(io.StringIO):
    """The console SMS backend's output, as a developer would read it in the terminal."""

    def last_code(self, phone: str) -> str:
        codes = re.findall(rf"SMS to {re.escape(phone)}: .*?(\d{{6}})", self.getvalue())
        assert codes, f"no SMS to {phone} in: {self.getvalue()!r}"
        return codes[-1]


@pytest.fixture
def sms_output() -> SmsOutput:
    return SmsOutput()


@pytest.fixture
def live_server(app_config: dict[str, Any], sms_output: SmsOutput) -> Iterator[Any]:
    """The portal (with the demo data) on 127.0.0.1:<free port>, in a thread of this process, with a real task
    queue worker (a Huey consumer on the instance's SQLite queue) beside it, as `make run` has."""
    from portal import create_app
    from portal.tasks import start_consumer
    from tests.conftest import prepare_schema

    sock = make_server("127.0.0.1", 0, lambda e, s: [])  # find a free port
    port = sock.server_port
    sock.server_close()
    config = dict(app_config)
    config["SMS_BACKEND_OBJECT"] = ConsoleSms(stream=sms_output)
    config["BASE_URL"] = f"http://127.0.0.1:{port}"
    config["TESTING"] = False
    # The demo connects ООО «Ромашка» to a CRM; here it is one that refuses connections (discard port), never a
    # CRM emulator someone else runs on the default port.
    config["CRM_EMULATOR_URL"] = "http://127.0.0.1:9"
    app = create_app(config)
    engine = app.extensions["portal.db"].engine
    prepare_schema(engine)
    with app.app_context(), app.extensions["portal.db"].session() as db:
        seed_demo_data(db)
    consumer = start_consumer(app, workers=2, periodic=False, signals=False)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    app.base_url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    yield app
    server.shutdown()
    thread.join(timeout=5)
    consumer.stop(graceful=True)
    engine.dispose()


def _chromium_available() -> bool:
    return Path(CHROMIUM).exists() or shutil.which("chromium") is not None


@pytest.fixture(scope="session")
def _playwright() -> Iterator[Any]:
    if not _chromium_available():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Chromium not found at {CHROMIUM}: .ci/run installs it (apt-get install chromium)")
        pytest.skip(f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(_playwright: Any) -> Iterator[Any]:
    b = _playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield b
    b.close()


@pytest.fixture
def page(browser: Any, live_server: Any) -> Iterator[Any]:
    context = browser.new_context(
        locale="ru-RU", viewport={"width": 1280, "height": 860}, base_url=live_server.base_url
    )
    context.set_default_timeout(15000)
    p = context.new_page()
    yield p
    context.close()


@pytest.fixture
def nojs_page(browser: Any, live_server: Any) -> Iterator[Any]:
    context = browser.new_context(
        locale="ru-RU",
        viewport={"width": 1280, "height": 860},
        base_url=live_server.base_url,
        java_script_enabled=False,
    )
    p = context.new_page()
    yield p
    context.close()


def shot(page: Any, name: str) -> Path:
    """A full-page screenshot a person can open: test-artifacts/screenshots/<name>.png (not committed)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Any, sms_output: SmsOutput, phone_typed: str, phone_e164: str) -> None:
    page.goto("/login")
    page.get_by_label("Номер телефона").fill(phone_typed)
    page.get_by_role("button", name="Получить код").click()
    page.get_by_label("Код из SMS").fill(sms_output.last_code(phone_e164))
    page.get_by_role("button", name="Войти").click()
