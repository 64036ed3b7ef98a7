"""What a signed-in account pays for a plan today: the one figure every page that names an amount shows.

Checkout charges the purchase billing prices (a co-termed extra payment for an upgrade, a period from today or from
the paid end otherwise) less the company's balance, which the ledger applies first. The over-limit dialog and
banner, the dashboard's next step, the plan cards and the API's quote read the same Offer, so the figure a person
is shown is the figure they are asked to pay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from portal.billing.catalog import Plan
from portal.billing.purchases import Purchase, price_purchase
from portal.db import memo
from portal.payments import ledger
from portal.timeutil import msk_date


@dataclass(frozen=True)
class Offer:
    purchase: Purchase
    balance: int  # kopecks on the company's balance now

    @property
    def amount(self) -> int:
        """The order's cost."""
        return self.purchase.amount

    @property
    def from_balance(self) -> int:
        return min(self.balance, self.purchase.amount)

    @property
    def due(self) -> int:
        """What the payer is asked for at checkout: the cost less the balance."""
        return self.purchase.amount - self.from_balance

    @property
    def covers(self) -> str:
        return self.purchase.covers

    def as_json(self) -> dict[str, object]:
        return {
            "plan": self.purchase.plan.code,
            "kind": self.purchase.kind,
            "months": self.purchase.months,
            "starts_on": self.purchase.starts_on.isoformat(),
            "last_day": self.purchase.last_day.isoformat(),
            "amount": self.amount,
            "from_balance": self.from_balance,
            "due": self.due,
            "covers": self.covers,
            # An upgrade's prepaid later periods raised in the same order (their parts are in `amount`).
            "topups": [
                {
                    "starts_on": t.period.starts_on.isoformat(),
                    "last_day": t.period.last_day.isoformat(),
                    "amount": t.charge,
                }
                for t in self.purchase.topups
            ],
        }


def offer_for_purchase(db: Session, account_id: int, purchase: Purchase) -> Offer:
    return Offer(purchase=purchase, balance=ledger.account_balance(db, account_id))


def get_offer(db: Session, account_id: int, plan: Plan, months: int, now: datetime) -> Offer:
    """The checkout's own quote; billing.PurchaseError when the plan cannot be bought (free, not offered).

    The dashboard and the over-limit warning quote the same suggestion on one page: it is priced once."""
    return memo(
        db,
        ("offer", account_id, plan, months, msk_date(now)),
        lambda: offer_for_purchase(db, account_id, price_purchase(db, account_id, plan, months, now)),
    )
