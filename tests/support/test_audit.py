"""The audit log is append-only: the ORM refuses to change or delete a record, and no code tries to."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from portal.audit import AuditLog, AuditLogIsAppendOnly, record_audit

PORTAL = Path(__file__).resolve().parents[2] / "portal"

# Ways to change or remove rows of audit_log from Python or SQL.
FORBIDDEN = [
    re.compile(r"\b(?:update|delete)\s*\(\s*(?:AuditLog|audit_log)\b", re.IGNORECASE),
    re.compile(r"AuditLog\s*\.\s*__table__\s*\.\s*(?:update|delete)\b"),
    re.compile(r"\b(?:UPDATE|DELETE\s+FROM|TRUNCATE(?:\s+TABLE)?)\s+[\"'`]?audit_log\b", re.IGNORECASE),
    re.compile(r"query\s*\(\s*AuditLog\s*\)[^\n]*\.\s*(?:update|delete)\s*\(", re.IGNORECASE),
]


def offending_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if any(p.search(line) for p in FORBIDDEN)]


def test_the_orm_refuses_to_change_a_record(db, make_account):
    account = make_account()
    entry = record_audit(
        db, actor=None, account=account, action="support.trial_switched_on", after={"plan": "users-12"}
    )
    db.commit()
    entry.after = {"plan": "users-1000"}
    with pytest.raises(AuditLogIsAppendOnly):
        db.commit()
    db.rollback()
    db.expire_all()
    assert db.get(AuditLog, entry.id).after == {"plan": "users-12"}


def test_the_orm_refuses_to_delete_a_record(db, make_account):
    account = make_account()
    entry = record_audit(db, actor=None, account=account, action="support.invoice_marked_paid", reason="п/п № 1")
    db.commit()
    db.delete(entry)
    with pytest.raises(AuditLogIsAppendOnly):
        db.commit()
    db.rollback()
    assert db.scalar(sa.select(sa.func.count()).select_from(AuditLog).where(AuditLog.id == entry.id)) == 1


def test_the_grep_catches_what_it_should():
    """The source check below must not pass vacuously: these lines would be caught."""
    bad = [
        "db.execute(sa.update(AuditLog).values(reason='x'))",
        "db.execute(delete(AuditLog).where(AuditLog.id == 1))",
        "conn.execute(AuditLog.__table__.delete())",
        'db.execute(text("DELETE FROM audit_log WHERE id = 1"))',
        "cur.execute('update audit_log set reason = null')",
        "db.query(AuditLog).filter_by(id=1).delete()",
        'op.execute("TRUNCATE audit_log")',
    ]
    assert [offending_lines(line) != [] for line in bad] == [True] * len(bad)
    assert offending_lines("q = sa.select(AuditLog).order_by(AuditLog.id.desc())") == []


def test_no_view_or_service_issues_update_or_delete_on_the_audit_log():
    sources = [p for p in PORTAL.rglob("*") if p.suffix in (".py", ".sql", ".html") and p.is_file()]
    assert len(sources) > 50
    found = {str(p.relative_to(PORTAL)): offending_lines(p.read_text(encoding="utf-8")) for p in sources}
    assert {path: lines for path, lines in found.items() if lines} == {}


def test_the_audit_page_only_reads(app):
    rules = [r for r in app.url_map.iter_rules() if "audit" in r.rule]
    assert rules and all(r.methods <= {"GET", "HEAD", "OPTIONS"} for r in rules)


def test_a_record_reads_as_before_and_after_in_russian():
    from portal.audit.labels import audit_changes

    entry = AuditLog(
        action="support.custom_plan_set",
        before={"monthly_price": 2_999_000, "plan": "users-5", "paid_until": None, "request_id": None},
        after={"monthly_price": 4_499_050, "plan": "custom-3-1500", "paid_until": "2027-05-24", "active": True},
    )
    lines = {c.label: (c.before, c.after, c.changed) for c in audit_changes(entry)}
    assert lines["Цена в месяц"] == ("29\u00a0990,00\u00a0₽", "44\u00a0990,50\u00a0₽", True)
    assert lines["Тариф"] == ("5 пользователей", "Индивидуальный: 1500 пользователей", True)
    assert lines["Оплачен по"] == ("—", "24.05.2027", True)
    assert lines["Действует"] == (None, "да", True)
    assert "Заявка №" not in lines  # empty on both sides: nothing to say
