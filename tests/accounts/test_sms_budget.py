"""Issue #14: a global budget of sign-in codes per hour, counted in the database, with one staff alert an hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from portal.accounts import service
from portal.accounts.models import SmsCode
from portal.audit import AuditLog
from portal.db import utcnow
from tests.conftest import RecordingSms, csrf_token
from tests.support.conftest import RecordingEmail

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
REFUSAL = "Сервис временно не отправляет коды, попробуйте через "


@pytest.fixture
def mailbox() -> RecordingEmail:
    return RecordingEmail()


@pytest.fixture
def app_config(app_config: dict[str, Any], mailbox: RecordingEmail) -> dict[str, Any]:
    app_config["EMAIL_BACKEND_OBJECT"] = mailbox
    app_config["SMS_BUDGET_PER_HOUR"] = 3
    app_config["SMS_SEND_LIMIT_PER_IP"] = "100 per hour"
    return app_config


def _ask(client: Any, phone: str) -> Any:
    return client.post("/login", data={"phone": phone, "csrf_token": csrf_token(client, "/login")})


def _alerts(db: Any) -> list[AuditLog]:
    db.expire_all()
    return list(db.scalars(sa.select(AuditLog).where(AuditLog.action == "accounts.sms_budget_reached")))


def test_over_the_budget_codes_are_refused_and_staff_alerted_once(client, db, sms: RecordingSms, mailbox) -> None:
    statuses = [_ask(client, f"+7916555000{i}").status_code for i in range(3)]
    assert statuses == [302, 302, 302]
    refused = _ask(client, "+79165550009")
    assert refused.status_code == 503
    html = refused.get_data(as_text=True)
    assert REFUSAL in html and "или обратитесь в поддержку" in html
    assert len(sms.messages) == 3
    assert db.scalar(sa.select(sa.func.count()).select_from(SmsCode)) == 3

    [alert] = _alerts(db)
    assert alert.after == {"budget_per_hour": 3}
    assert [m["To"] for m in mailbox.sent] == ["support@example.ru"]
    assert "достигнут предел 3 в час" in mailbox.sent[0]["Subject"]

    # Still over: refused again, but staff are not told twice within the hour.
    assert _ask(client, "+79165550008").status_code == 503
    assert len(_alerts(db)) == 1 and len(mailbox.sent) == 1


def test_the_budget_counts_codes_of_every_server_from_the_table(client, db, sms: RecordingSms) -> None:
    """Rows another server created count the same; rows older than an hour do not count at all."""
    now = utcnow()
    for minutes_ago in (90, 50, 40, 30):
        db.add(SmsCode(phone="+79160000001", code_hash="x", created_at=now - timedelta(minutes=minutes_ago),
                       expires_at=now))  # fmt: skip
    db.commit()
    resp = _ask(client, "+79165550001")
    assert resp.status_code == 503
    # The code of 50 minutes ago frees a place in 10 minutes.
    assert REFUSAL + "10 минут" in resp.get_data(as_text=True)
    assert sms.messages == []


def test_budget_wait_is_counted_from_the_oldest_code_that_must_age_out(app, db) -> None:
    for minutes_ago in (59, 20, 10, 5):
        db.add(SmsCode(phone="+79160000001", code_hash="x", created_at=NOW - timedelta(minutes=minutes_ago),
                       expires_at=NOW))  # fmt: skip
    db.commit()
    assert service.sms_budget_wait(db, now=NOW, budget=5) is None
    assert service.sms_budget_wait(db, now=NOW, budget=4) == 1
    assert service.sms_budget_wait(db, now=NOW, budget=3) == 40
    assert service.sms_budget_wait(db, now=NOW + timedelta(minutes=2), budget=4) is None
