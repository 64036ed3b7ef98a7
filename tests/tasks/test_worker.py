"""A real worker: `flask --app wsgi worker` in a process of its own takes the work a page queued and does it."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from portal.documents.models import Invoice
from portal.tasks.models import TaskRun
from tests.conftest import post
from tests.documents.factories import payment, statement

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app_config(app_config: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    app_config["TASK_QUEUE_URL"] = f"sqlite:///{tmp_path / 'queue.db'}"
    return app_config


@pytest.fixture
def worker(app: Any, app_config: dict[str, Any], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "TASK_QUEUE_URL"))}
    for key in ("INSTANCE_PATH", "SECRET_KEY", "DATABASE_URL", "DOCUMENT_STORE_PATH", "TASK_QUEUE_URL", "BASE_URL"):
        env[key] = str(app_config[key])
    env["SANDBOX_WEBHOOK_SECRET"] = str(app_config["SANDBOX_WEBHOOK_SECRET"])
    env["MESSENGER_API_TOKEN"] = str(app_config["MESSENGER_API_TOKEN"])
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--workers", "2"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)  # a graceful stop: the consumer finishes what it holds
        try:
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()


def wait_finished(client: Any, run_id: int, timeout: float = 120) -> dict[str, Any]:
    """Poll the run's status as the page's script does, until the worker says it is finished."""
    deadline = time.monotonic() + timeout
    while True:
        state = client.get(f"/tasks/{run_id}/status").get_json()
        if state["finished"]:
            return state
        assert time.monotonic() < deadline, f"the worker did not finish run {run_id}: {state}"
        time.sleep(0.2)


def test_a_worker_process_imports_the_uploaded_statement(
    worker: Any, staff_client: Any, db: Any, invoice: Invoice, tmp_path: Path
) -> None:
    data = statement(payment("76", invoice.amount, f"Оплата счёта № {invoice.number}"), payment("77", 500, "Прочее"))

    resp = post(
        staff_client,
        "/support/statements",
        {"statement": (io.BytesIO(data), "выписка.txt")},
        content_type="multipart/form-data",
    )

    # The page answered without doing the work: the run waits for the worker.
    assert resp.status_code == 302
    run = db.scalars(sa.select(TaskRun)).one()
    page = staff_client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Загрузка выписки выписка.txt" in page and ('<meta http-equiv="refresh"' in page or "Готово" in page)
    state = wait_finished(staff_client, run.id)
    assert state["status"] == "done", (state, (tmp_path / "worker.log").read_text(errors="replace")[-3000:])
    assert state["done"] == state["total"] == 2
    db.expire_all()
    assert db.get(Invoice, invoice.id).status == "paid"
    page = staff_client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "сопоставлено: 1, не сопоставлено: 1" in page
    assert worker.poll() is None  # still serving
