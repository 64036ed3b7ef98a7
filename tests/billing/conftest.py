"""Billing fixtures: buy a plan for an account at a frozen moment, as payments would after the money arrives."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from blinker import ANY, NamedSignal

from portal.audit import AuditLog
from portal.billing import checkout, signals
from portal.billing.models import Order
from portal.billing.orders import create_order
from portal.billing.settlement import apply_paid_order

_keys = itertools.count(1)


class _TestOnlyRegistry(dict):
    """Stands in for a registry during a billing test: keeps only what tests register.

    Other features register their real handlers and hooks (payments' re-check, documents' invoice); those go to
    the real registry, untouched, so a test run in the same process after this one still finds them.
    """

    def __init__(self, real: dict[str, Any]) -> None:
        super().__init__()
        self.real = real

    def __setitem__(self, key: str, value: Any) -> None:
        target = getattr(value, "handler", value)  # a checkout option carries the registering feature's handler
        module = getattr(target, "__module__", "") or ""
        if module.startswith("tests."):
            super().__setitem__(key, value)
        else:
            self.real[key] = value


class _TestOnlySignal(NamedSignal):
    """Stands in for billing's tick signal during a billing test: only receivers from tests are connected to it;
    the other features' receivers (connected by create_app) go to the real signal, untouched."""

    def __init__(self, real: NamedSignal) -> None:
        super().__init__(real.name)
        self.real = real

    def connect(self, receiver: Any, sender: Any = ANY, weak: bool = True) -> Any:
        if (getattr(receiver, "__module__", "") or "").startswith("tests."):
            return super().connect(receiver, sender, weak)
        return self.real.connect(receiver, sender, weak)


@pytest.fixture(autouse=True)
def only_test_registrations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Billing's tests run billing's own tick and checkout against handlers the test registers itself."""
    monkeypatch.setattr(signals, "tick_done", _TestOnlySignal(signals.tick_done))
    monkeypatch.setattr(checkout, "_CHECKOUT", _TestOnlyRegistry(checkout._CHECKOUT))


def new_key() -> str:
    return f"test-key-{next(_keys):06d}"


@pytest.fixture
def order_for(db: Any) -> Callable[..., Order]:
    """Factory: a pending order created through the service (and committed), like the checkout does."""

    def factory(
        account: Any, plan: str, months: int, now: datetime, payer_type: str = "card", key: str | None = None
    ) -> Order:
        order = create_order(
            db,
            actor=None,
            account_id=account.id,
            plan_code=plan,
            months=months,
            payer_type=payer_type,
            license_version="2026-01",
            idempotency_key=key or new_key(),
            now=now,
        )
        db.commit()
        return order

    return factory


@pytest.fixture
def buy(db: Any, order_for: Callable[..., Order]) -> Callable[..., Order]:
    """Factory: order and pay at the same moment."""

    def factory(account: Any, plan: str, months: int, now: datetime, paid_at: datetime | None = None) -> Order:
        order = order_for(account, plan, months, now)
        assert apply_paid_order(db, order.id, now=paid_at or now, reference=f"test-{order.id}")
        db.commit()
        return order

    return factory


def audit_actions(db: Any, account_id: int, prefix: str = "billing.") -> list[str]:
    return list(
        db.scalars(
            sa.select(AuditLog.action)
            .where(AuditLog.account_id == account_id, AuditLog.action.like(prefix + "%"))
            .order_by(AuditLog.id)
        )
    )


@pytest.fixture
def freeze(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime], datetime]:
    """Pages read the clock through utcnow(); a test sets it to a moment of its own."""

    def set_now(moment: datetime) -> datetime:
        import portal.billing.views
        import portal.dashboard

        monkeypatch.setattr(portal.billing.views, "utcnow", lambda: moment)
        monkeypatch.setattr(portal.dashboard, "utcnow", lambda: moment)
        return moment

    return set_now


def page_text(resp: Any) -> str:
    """The visible text of a page: tags dropped, entities decoded, whitespace collapsed (as a reader sees it)."""
    import html
    import re

    body = resp.get_data(as_text=True)
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
    text = html.unescape(re.sub(r"<[^>]+>", " ", body))
    text = re.sub(r"\s+", " ", text.replace("\u00a0", " ")).strip()
    return re.sub(r" ([,.;:!?])", r"\1", text)  # a closing tag before punctuation is not a space to a reader
