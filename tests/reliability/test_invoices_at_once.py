"""Twenty accountants press «Перейти к оплате» for an invoice at the same moment, over real HTTP: twenty invoices,
numbered 1…20 of the year with no gap and no repeat, each with its own stored PDF."""

from __future__ import annotations

import re
import threading
from typing import Any

import requests
import sqlalchemy as sa
from werkzeug.serving import make_server

from portal.db import utcnow
from portal.documents import render
from portal.documents.models import Invoice, StoredFile
from portal.timeutil import msk_date
from tests.conftest import RecordingSms
from tests.documents.factories import give_requisites
from tests.payments.conftest import form_fields

PEOPLE = 20


def _sign_in(base: str, phone: str, sms: RecordingSms) -> requests.Session:
    s = requests.Session()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', s.get(f"{base}/login").text).group(1)
    s.post(f"{base}/login", data={"csrf_token": token, "phone": phone}, allow_redirects=False)
    resp = s.post(f"{base}/login/code", data={"csrf_token": token, "code": sms.last_code(phone)}, allow_redirects=False)
    assert resp.status_code == 302, resp.text[:300]
    return s


def test_twenty_invoices_ordered_at_once_get_numbers_1_to_20(
    pg_url: str, app: Any, db: Any, sms: RecordingSms, make_account: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(render, "render_invoice_pdf", lambda ctx: f"%PDF-1.7 invoice {ctx['number']}".encode())
    app.config["SMS_SEND_LIMIT_PER_IP"] = "100 per hour"
    phones = [f"+7916300{i:04d}" for i in range(PEOPLE)]
    for phone in phones:
        give_requisites(db, make_account(name=f"ООО «Компания {phone[-2:]}»", owner_phone=phone))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        ready = []
        for phone in phones:
            session = _sign_in(base, phone, sms)
            page = session.get(f"{base}/checkout?plan=users-12&months=9").text
            data = form_fields(page) | {"payer_type": "invoice", "accept_license": "y"}
            ready.append((session, data))
        barrier = threading.Barrier(PEOPLE)
        answers: list[str] = []
        lock = threading.Lock()

        def press(session: requests.Session, data: dict[str, str]) -> None:
            barrier.wait(timeout=30)
            resp = session.post(
                f"{base}/checkout?plan=users-12&months=9", data=data, allow_redirects=False, timeout=120
            )
            with lock:
                answers.append(f"{resp.status_code} {resp.headers.get('Location', '')}")

        presses = [threading.Thread(target=press, args=pair) for pair in ready]
        for t in presses:
            t.start()
        for t in presses:
            t.join(timeout=180)
    finally:
        server.shutdown()
        thread.join(timeout=5)

    assert len(answers) == PEOPLE and all(re.fullmatch(r"302 /documents/invoices/\d+", a) for a in answers), answers
    year = msk_date(utcnow()).year
    db.expire_all()
    invoices = db.scalars(sa.select(Invoice).order_by(Invoice.serial)).all()
    assert [i.number for i in invoices] == [f"{year}-{n:06d}" for n in range(1, PEOPLE + 1)]
    assert len({i.account_id for i in invoices}) == PEOPLE
    files = db.scalars(sa.select(StoredFile).where(StoredFile.id.in_([i.pdf_file_id for i in invoices]))).all()
    assert sorted(f.download_name for f in files) == sorted(
        f"Счёт на оплату № {i.number} от {i.issued_on:%d.%m.%Y}.pdf" for i in invoices
    )
