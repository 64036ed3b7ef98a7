"""A server killed (SIGKILL, no clean-up code runs) in the middle of writing a document's bytes: no partial document is
ever served, nothing is half-recorded, and the next attempt produces the document — with the same number."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from portal.billing.tick import tick
from portal.documents import render
from portal.documents.invoices import issue_invoice
from portal.documents.models import Invoice, StoredFile, Upd
from portal.documents.service import read_file
from portal.payments.statement_lines import mark_invoice_paid
from tests.documents.factories import NOW, give_requisites, issue, make_order

# The dying server: the app on the test's database and store, renderers as in the test, and a file object whose
# write() puts half the bytes on disk and then kills the process outright.
DYING_SERVER = textwrap.dedent(
    """
    import os, signal, sys, json
    from datetime import datetime
    from portal import create_app
    from portal.documents import render

    config = json.loads(sys.argv[1])
    render.render_invoice_pdf = lambda ctx: ("%PDF-1.7 invoice " + ctx["number"] + " " + "x" * 50000).encode()
    render.render_upd_pdf = lambda ctx: ("%PDF-1.7 upd " + ctx["number"] + " " + "y" * 50000).encode()
    app = create_app(config)

    real_fdopen = os.fdopen

    class DiesMidWrite:
        def __init__(self, fh):
            self.fh = fh
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            self.fh.close()
        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            self.fh.flush()
            os.fsync(self.fh.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        def __getattr__(self, name):
            return getattr(self.fh, name)

    os.fdopen = lambda fd, mode="r", *a, **kw: DiesMidWrite(real_fdopen(fd, mode, *a, **kw))
    now = datetime.fromisoformat(sys.argv[3])
    with app.app_context():
        db = app.extensions["portal.db"].sessionmaker()
        if sys.argv[2].startswith("invoice:"):
            from portal.billing.models import Order
            from portal.documents.invoices import issue_invoice
            order = db.get(Order, int(sys.argv[2].split(":")[1]))
            issue_invoice(db, order, actor=None, now=now, config=app.config)
            db.commit()
        else:
            from portal.billing.tick import tick
            tick(db, now)
    print("survived")
    """
)


def _stub_renderers(monkeypatch: Any) -> None:
    # The same bytes as the dying server's, so a retry names the file the same way.
    monkeypatch.setattr(
        render, "render_invoice_pdf", lambda ctx: f"%PDF-1.7 invoice {ctx['number']} {'x' * 50000}".encode()
    )
    monkeypatch.setattr(render, "render_upd_pdf", lambda ctx: f"%PDF-1.7 upd {ctx['number']} {'y' * 50000}".encode())


def _die_writing(app: Any, what: str) -> None:
    import json

    config = {
        key: app.config[key]
        for key in (
            "DATABASE_URL",
            "SECRET_KEY",
            "DOCUMENT_STORE_PATH",
            "MESSENGER_API_TOKEN",
            "SANDBOX_WEBHOOK_SECRET",
        )
    }
    config.update(INSTANCE_PATH=str(Path(app.config["DOCUMENT_STORE_PATH"]).parent / "dying-instance"), TESTING=True)
    proc = subprocess.run(
        [sys.executable, "-c", DYING_SERVER, json.dumps(config), what, NOW.isoformat()],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert "survived" not in proc.stdout


def _store_files(app: Any) -> list[Path]:
    root = Path(app.config["DOCUMENT_STORE_PATH"])
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _assert_store_holds_only_whole_documents(app: Any, db: Any) -> None:
    """Every file in the store is a recorded document with its recorded hash — nothing partial, nothing stray."""
    db.expire_all()
    recorded = {row.path: row for row in db.scalars(sa.select(StoredFile))}
    root = Path(app.config["DOCUMENT_STORE_PATH"])
    on_disk = {p.relative_to(root).as_posix() for p in _store_files(app)}
    assert on_disk == set(recorded), f"files not recorded as documents: {sorted(on_disk - set(recorded))}"
    for row in recorded.values():
        assert len(read_file(row, app.config)) == row.size  # read_file checks the SHA-256


@pytest.fixture
def company(make_account: Any, db: Any) -> Any:
    account = make_account(name="ООО «Ромашка»")
    give_requisites(db, account)
    return account


def test_killed_while_writing_an_invoice_then_issued_with_the_same_number(app, db, company, monkeypatch):
    _stub_renderers(monkeypatch)
    order = make_order(db, company)
    _die_writing(app, f"invoice:{order.id}")

    db.expire_all()
    assert db.scalars(sa.select(Invoice)).all() == []  # the issuing transaction died with the server
    assert [p for p in _store_files(app) if not p.name.startswith(".tmp-")] == []

    with app.app_context():
        invoice = issue_invoice(db, order, actor=None, now=NOW, config=app.config)
        db.commit()
    assert invoice.number == "2026-000001"  # the number the dead attempt had taken is not lost
    _assert_store_holds_only_whole_documents(app, db)
    resp_bytes = read_file(db.get(StoredFile, invoice.pdf_file_id), app.config)
    assert resp_bytes.startswith(b"%PDF-1.7 invoice 2026-000001") and len(resp_bytes) > 50000


def test_killed_while_writing_an_upd_then_the_next_tick_forms_it(app, db, company, monkeypatch):
    _stub_renderers(monkeypatch)
    invoice = issue(app, db, company)
    real_upd = render.render_upd_pdf
    monkeypatch.setattr(render, "render_upd_pdf", lambda ctx: (_ for _ in ()).throw(RuntimeError("нет шрифта")))
    with app.app_context():
        mark_invoice_paid(db, invoice.id, actor=None, bank_reference="п/п № 512", paid_on=date(2026, 11, 26), now=NOW)
    monkeypatch.setattr(render, "render_upd_pdf", real_upd)
    db.expire_all()
    assert db.scalars(sa.select(Upd)).one().status == "pending"

    _die_writing(app, "tick")

    db.expire_all()
    upd = db.scalars(sa.select(Upd)).one()
    assert (upd.status, upd.pdf_file_id, upd.xml_file_id) == ("pending", None, None)
    assert db.get(Invoice, invoice.id).status == "paid"  # the payment was never at risk
    with app.app_context():
        done = tick(db, NOW)
    assert f"УПД № {upd.number} сформирован" in done
    db.expire_all()
    upd = db.get(Upd, upd.id)
    assert upd.status == "formed"
    pdf = read_file(db.get(StoredFile, upd.pdf_file_id), app.config)
    assert pdf.startswith(f"%PDF-1.7 upd {upd.number}".encode()) and len(pdf) > 50000
    _assert_store_holds_only_whole_documents(app, db)
    assert os.path.exists(Path(app.config["DOCUMENT_STORE_PATH"]) / db.get(StoredFile, upd.xml_file_id).path)
