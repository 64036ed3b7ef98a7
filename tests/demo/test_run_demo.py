"""`flask run-demo --port N` as a newcomer starts it: the whole demo follows the port, with no other setting."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from devtools.demo.cli import follow_port
from tests.payments.conftest import form_fields

ROOT = Path(__file__).resolve().parents[2]
FLASK = [sys.executable, "-m", "flask", "--app", "wsgi"]


def test_addresses_follow_the_port_unless_the_environment_sets_them() -> None:
    config: dict = {"BASE_URL": "http://127.0.0.1:5000", "CRM_EMULATOR_URL": "http://127.0.0.1:5055"}
    follow_port(config, 5102, environ={})
    assert config == {
        "BASE_URL": "http://127.0.0.1:5102",
        "CRM_EMULATOR_URL": "http://127.0.0.1:5157",
        "EDO_EMULATOR_URL": "http://127.0.0.1:5158",
    }
    config = {
        "BASE_URL": "https://portal.example.ru",
        "CRM_EMULATOR_URL": "http://crm.local:8000",
        "EDO_EMULATOR_URL": "http://edo.local:8001",
    }
    follow_port(config, 5102, environ=dict(config))
    assert config == {
        "BASE_URL": "https://portal.example.ru",
        "CRM_EMULATOR_URL": "http://crm.local:8000",
        "EDO_EMULATOR_URL": "http://edo.local:8001",
    }


def _free_port_pair() -> int:
    """A port N with N + 55 free as well (the CRM emulator's place)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 55 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 55))
            except OSError:
                continue
        return port
    raise AssertionError("no free pair of ports")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("BASE_URL", "CRM_EMULATOR_URL", "EDO_EMULATOR_URL", "DATABASE_URL")
    }
    env["INSTANCE_PATH"] = str(tmp_path / "instance")
    for step in (["db", "upgrade"], ["seed-demo"]):
        done = subprocess.run([*FLASK, *step], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert "alembic" not in done.stderr.lower(), done.stderr  # the terminal is for people, not library chatter
    port = _free_port_pair()
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        proc = subprocess.Popen([*FLASK, "run-demo", "--port", str(port)], cwd=ROOT, env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                if requests.get(f"{base}/login", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            raise AssertionError(log.read_text())
        yield base, log, tmp_path / "instance" / "portal.db"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _csrf(page: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)  # type: ignore[union-attr]


def test_the_demo_on_another_port_takes_a_card_payment_and_syncs_the_crm(demo: tuple[str, Path, Path]) -> None:
    base, log, database = demo
    banner = log.read_text()
    assert f"Портал: {base}" in banner
    for phone in ("+7 999 000-00-01", "+7 999 000-00-02", "+7 999 000-00-03", "+7 999 000-00-99"):
        assert phone in banner
    port = int(base.rsplit(":", 1)[1])
    if f"Эмулятор ЭДО: http://127.0.0.1:{port + 56}" in banner:  # started unless that port was taken
        assert "входящие документы покупателя" in requests.get(f"http://127.0.0.1:{port + 56}/", timeout=5).text
    else:
        assert "ЭДО emulator not started" in banner

    browser = requests.Session()
    page = browser.get(f"{base}/login").text
    browser.post(f"{base}/login", data={"phone": "+7 999 000-00-01", "csrf_token": _csrf(page)})
    code = re.findall(r"SMS to \+79990000001: .*?(\d{6})", log.read_text())[-1]
    page = browser.get(f"{base}/login/code").text
    assert browser.post(f"{base}/login/code", data={"code": code, "csrf_token": _csrf(page)}).url == f"{base}/"

    # Card checkout: the payer is sent to the sandbox on this port, and its notification reaches this port too.
    page = browser.get(f"{base}/checkout?plan=users-24&months=12").text
    data = form_fields(page) | {"payer_type": "card", "accept_license": "y"}
    resp = browser.post(f"{base}/checkout", data=data, allow_redirects=False)
    assert resp.headers["Location"].startswith(f"{base}/sandbox/pay/"), resp.headers.get("Location")
    pay_page = browser.get(resp.headers["Location"]).text
    card = {"number": "4111 1111 1111 1111", "expiry": "12/30", "cvc": "123", "action": "card"}
    resp = browser.post(resp.headers["Location"], data={**card, "csrf_token": _csrf(pay_page)})
    assert resp.status_code == 200 and resp.url.startswith(f"{base}/payments/return/"), resp.url
    assert "24 пользователя" in browser.get(f"{base}/").text

    # The CRM emulator moved with the port; the connection made at seed time still reaches it.
    page = browser.get(f"{base}/crm").text
    browser.post(f"{base}/crm/sync", data={"csrf_token": _csrf(page)})
    engine = sa.create_engine(f"sqlite:///{database}")
    # The sync is a task: the worker `run-demo` started beside the server does it; its page says when it is done.
    with engine.connect() as conn:
        run_id = conn.execute(sa.text("SELECT id FROM task_runs WHERE kind = 'crm_sync' ORDER BY id DESC")).scalar()
    assert run_id is not None
    deadline = time.monotonic() + 60
    while not (state := browser.get(f"{base}/tasks/{run_id}/status").json())["finished"]:
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    assert state["status"] == "done" and state["result_url"].startswith("/crm/runs/"), state
    with engine.connect() as conn:
        paid = conn.execute(sa.text("SELECT status FROM orders ORDER BY id DESC LIMIT 1")).scalar()
        runs = conn.execute(sa.text("SELECT status, error FROM crm_sync_runs ORDER BY id")).all()
    engine.dispose()
    assert paid == "paid"
    assert runs and runs[-1].status == "ok", runs
