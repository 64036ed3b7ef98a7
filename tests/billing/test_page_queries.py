"""Issue #18: a page asks each thing once. The header, the over-limit warning and the page itself all need the
person's memberships, the subscription state, the seat count and the balance; each is one query per request."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa

OWNER = "+79163330000"


def _statements(app: Any, client: Any, path: str) -> list[tuple[str, str]]:
    engine = app.extensions["portal.db"].engine
    seen: list[tuple[str, str]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        seen.append((statement, repr(parameters)))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        resp = client.get(path)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert resp.status_code == 200
    return seen


@pytest.fixture
def over_limit_owner(app, client, make_account, auth):
    make_account(owner_phone=OWNER, members=8)  # 9 active users on the free plan of 5: the warning shows too
    auth.login(OWNER)
    client.get("/")  # the session's account is chosen on the first page
    return client


@pytest.mark.parametrize(("path", "most"), [("/", 10), ("/plans", 7)])
def test_no_query_is_repeated_within_a_page(app, over_limit_owner, path, most):
    statements = _statements(app, over_limit_owner, path)
    repeated = {s[:80]: n for (s, _p), n in Counter(statements).items() if n > 1}
    assert repeated == {}
    assert len(statements) <= most


def test_the_memory_of_a_request_forgets_on_every_write(app, make_account):
    """Within a GET the seat count is asked once; a flush, a commit or a POST reads the database again."""
    from portal.accounts.models import Membership, MembershipStatus
    from portal.billing.subscriptions import count_active_users
    from portal.db import get_db

    account = make_account(members=2)
    with app.test_request_context("/", method="GET"):
        db = get_db()
        assert count_active_users(db, account.id) == 3
        member = db.scalars(sa.select(Membership).where(Membership.account_id == account.id).limit(1)).one()
        member.status = MembershipStatus.DEACTIVATED.value
        assert count_active_users(db, account.id) == 2  # an unflushed change is seen (autoflush), not the memory
        db.commit()
        assert count_active_users(db, account.id) == 2
        db.execute(sa.update(Membership).where(Membership.account_id == account.id).values(status="active"))
        assert count_active_users(db, account.id) == 3  # a bulk UPDATE forgets too
        db.rollback()
        assert count_active_users(db, account.id) == 2
    with app.test_request_context("/", method="POST"):
        db = get_db()
        assert count_active_users(db, account.id) == 2
        other = app.extensions["portal.db"].sessionmaker()
        other.execute(sa.update(Membership).where(Membership.account_id == account.id).values(status="active"))
        other.commit()
        other.close()
        assert count_active_users(db, account.id) == 3  # a POST never reuses an earlier read


@pytest.mark.parametrize(
    "periods",
    [
        [],  # the free plan
        [("users-24", -10, 170, None)],  # a paid period running
        [("users-24", -200, -1, 5)],  # ended yesterday, in its grace days
        [("users-24", -200, -1, 5), ("users-50", 3, 200, None)],  # in grace, a bigger plan scheduled later
        [("users-12", -100, 80, None), ("users-50", -2, 80, None)],  # an upgrade co-termed: the newer one applies
        [("users-12", -200, -1, 9), ("users-50", -1, 180, None)],  # grace, but a new period already covers today
        [("users-12", -200, -3, None)],  # ended without grace: back to free
    ],
)
def test_the_effective_plan_read_from_the_page_rows_is_the_one_the_query_chooses(app, make_account, periods):
    """Within a page the effective plan is taken from the running periods the subscription state read; it must be
    the plan the dedicated query picks, in every shape of periods."""
    from datetime import timedelta

    from portal.billing.models import SubscriptionPeriod
    from portal.billing.subscriptions import get_effective_plan, get_subscription_state
    from portal.db import get_db, utcnow
    from portal.timeutil import msk_date

    account = make_account()
    now = utcnow()
    today = msk_date(now)
    db = app.extensions["portal.db"].sessionmaker()
    for code, start, end, grace in periods:
        db.add(
            SubscriptionPeriod(
                account_id=account.id,
                kind="paid",
                plan_code=code,
                seats=int(code.split("-")[1]),
                storage_bytes=1,
                monthly_price=1,
                starts_on=today + timedelta(days=start),
                ends_on=today + timedelta(days=end),
                grace_ends_on=today + timedelta(days=grace) if grace is not None else None,
                term_start=today + timedelta(days=start),
                months=6,
            )
        )
    db.commit()
    expected = get_effective_plan(db, account.id, now)  # a session without the memory: the query
    db.close()
    with app.test_request_context("/", method="GET"):
        page_db = get_db()
        get_subscription_state(page_db, account.id, now)
        assert get_effective_plan(page_db, account.id, now).code == expected.code
