"""Акт сверки взаиморасчётов: the seller's side of the account's documents and money for a period, as PDF and XLSX.

From the seller's books: the debit is what the buyer owes for (rights transferred — a УПД, or an order paid by card
that has no УПД — and money refunded to the buyer), the credit is money received. A positive balance is the buyer's
debt, a negative one the seller's (an advance). Money lines are taken from the ledger by the same moments as
`payments report` (when each receipt and refund was recorded, Moscow dates), so the акт's turnovers equal the report's
`received` and `refunded` for the same dates, and its closing advance is the ledger's balance plus what is applied to
orders whose rights are not transferred yet (a part-paid invoice, a renewal paid in advance).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, Side
from sqlalchemy.orm import Session

from portal.billing.models import Order, OrderStatus, PeriodStatus, SubscriptionPeriod
from portal.documents import render
from portal.documents.models import Invoice, Requisites, Upd
from portal.documents.seller import get_seller
from portal.payments import ledger
from portal.payments.models import Receipt, Refund, RefundStatus
from portal.timeutil import msk_date, msk_midnight

MAX_PERIOD_DAYS = 3 * 366 + 1


class ReconciliationError(ValueError):
    """The period asked for cannot be reconciled; the message is for the accountant."""


@dataclass(frozen=True)
class ActLine:
    day: date
    title: str
    debit: int = 0
    credit: int = 0


@dataclass
class Reconciliation:
    account_id: int
    start: date
    end: date  # inclusive
    seller: dict[str, Any]
    buyer: dict[str, Any]
    opening: int  # + the buyer owes, − the seller owes (advance)
    lines: list[ActLine] = field(default_factory=list)
    ledger_balance: int = 0  # the ledger's balance at the end of the period (money on the account's balance)

    @property
    def debit_total(self) -> int:
        return sum(line.debit for line in self.lines)

    @property
    def credit_total(self) -> int:
        return sum(line.credit for line in self.lines)

    @property
    def received(self) -> int:
        return sum(line.credit for line in self.lines)

    @property
    def refunded(self) -> int:
        return sum(line.debit for line in self.lines if line.title.startswith("Возврат"))

    @property
    def closing(self) -> int:
        return self.opening + self.debit_total - self.credit_total

    @property
    def applied_not_transferred(self) -> int:
        """Of the closing advance, what is applied to orders whose rights are not transferred yet."""
        return -self.closing - self.ledger_balance

    @property
    def file_stem(self) -> str:
        return f"Акт сверки {self.start:%d.%m.%Y}-{self.end:%d.%m.%Y}"


def parse_dates(start_raw: str | None, end_raw: str | None) -> tuple[date, date]:
    """«2026-10-01» or «01.10.2026»; refuses reversed or over-long periods with a message for the accountant."""

    def one(raw: str | None, label: str) -> date:
        text = (raw or "").strip()
        for fmt in ("%Y-%m-%d", "%d.%m.%Y"):
            try:
                if text.isascii():
                    return datetime.strptime(text, fmt).date()
            except ValueError:
                continue
        raise ReconciliationError(f"Дата {label} указана неверно: нужна дата вида 01.10.2026.")

    start, end = one(start_raw, "начала"), one(end_raw, "конца")
    if end < start:
        raise ReconciliationError("Конец периода раньше его начала.")
    if (end - start).days > MAX_PERIOD_DAYS:
        raise ReconciliationError("Акт сверки составляется не больше чем за три года.")
    return start, end


def _shipments(db: Session, account_id: int) -> list[ActLine]:
    """Rights transferred: each УПД on its date; a paid order without an invoice (card, balance) when its rights began."""
    lines: list[ActLine] = []
    for upd in db.scalars(sa.select(Upd).where(Upd.account_id == account_id)):
        lines.append(
            ActLine(upd.doc_date, f"Передача прав, УПД № {upd.number} от {upd.doc_date:%d.%m.%Y}", debit=upd.amount)
        )
    invoiced = sa.select(Invoice.order_id).where(Invoice.account_id == account_id)
    # Rights granted: a paid order whose period was cancelled before it began transferred nothing.
    granted = sa.select(SubscriptionPeriod.order_id).where(
        SubscriptionPeriod.account_id == account_id,
        SubscriptionPeriod.status == PeriodStatus.ACTIVE,
        SubscriptionPeriod.order_id.is_not(None),
    )
    orders = db.scalars(
        sa.select(Order).where(
            Order.account_id == account_id,
            Order.status == OrderStatus.PAID,
            Order.id.not_in(invoiced),
            Order.id.in_(granted),
        )
    )
    for order in orders:
        if not order.amount:
            continue
        paid_on = msk_date(order.paid_at) if order.paid_at else order.starts_on
        day = max(paid_on, order.starts_on)
        lines.append(
            ActLine(day, f"Передача прав по заказу № {order.id} от {day:%d.%m.%Y} (без УПД)", debit=order.amount)
        )
    return lines


def _money(db: Session, account_id: int) -> list[ActLine]:
    lines: list[ActLine] = []
    for r in db.scalars(sa.select(Receipt).where(Receipt.account_id == account_id)):
        lines.append(
            ActLine(msk_date(r.created_at), f"Оплата ({r.method_title.lower()}): {r.reference}", credit=r.amount)
        )
    for f in db.scalars(
        sa.select(Refund).where(Refund.account_id == account_id, Refund.status != RefundStatus.CANCELED.value)
    ):
        lines.append(ActLine(msk_date(f.created_at), f"Возврат денежных средств № {f.id}", debit=f.amount))
    return lines


def build_reconciliation(
    db: Session, account_id: int, start: date, end: date, config: Mapping[str, Any]
) -> Reconciliation:
    """The акт for [start, end] (Moscow dates, inclusive)."""
    requisites = db.scalars(sa.select(Requisites).where(Requisites.account_id == account_id)).first()
    if requisites is None:
        raise ReconciliationError("Чтобы составить акт сверки, укажите реквизиты компании.")
    every = sorted(_shipments(db, account_id) + _money(db, account_id), key=lambda line: (line.day, line.credit > 0))
    opening = sum(line.debit - line.credit for line in every if line.day < start)
    act = Reconciliation(
        account_id=account_id,
        start=start,
        end=end,
        seller=get_seller(config).as_dict(),
        buyer=requisites.as_dict(),
        opening=opening,
        lines=[line for line in every if start <= line.day <= end],
        ledger_balance=ledger.account_totals(
            db, account_id, msk_midnight(date.fromordinal(end.toordinal() + 1))
        ).balance,
    )
    return act


def _context(act: Reconciliation) -> dict[str, Any]:
    seller_name, buyer_name = act.seller["name"], act.buyer["name"]
    closing = act.closing
    if closing > 0:
        verdict = f"задолженность в пользу {seller_name} составляет {render.rub(closing)} руб."
    elif closing < 0:
        verdict = f"задолженность в пользу {buyer_name} составляет {render.rub(-closing)} руб."
    else:
        verdict = "задолженность отсутствует."
    return {
        "number": f"{act.account_id}-{act.start:%Y%m%d}-{act.end:%Y%m%d}",
        "date": act.end,
        "start": act.start,
        "end": act.end,
        "seller": act.seller,
        "buyer": act.buyer,
        "opening": act.opening,
        "lines": [{"day": x.day, "title": x.title, "debit": x.debit, "credit": x.credit} for x in act.lines],
        "debit_total": act.debit_total,
        "credit_total": act.credit_total,
        "closing": closing,
        "verdict": verdict,
        "ledger_balance": act.ledger_balance,
        "applied_not_transferred": act.applied_not_transferred,
    }


def render_pdf(act: Reconciliation) -> bytes:
    return render.render_reconciliation_pdf(_context(act))


def render_xlsx(act: Reconciliation) -> bytes:
    """The same table as the PDF, as a workbook the buyer's accountant can fill in their columns of."""

    ctx = _context(act)
    wb = Workbook()
    ws = wb.active
    ws.title = "Акт сверки"
    bold = Font(bold=True)
    thin = Side(style="thin")
    box = Border(left=thin, right=thin, top=thin, bottom=thin)
    money_format = "#,##0.00"
    ws.append([f"Акт сверки взаимных расчётов за период с {act.start:%d.%m.%Y} по {act.end:%d.%m.%Y}"])
    ws.append([f"между {act.seller['name']} (ИНН {act.seller['inn']}) и {act.buyer['name']} (ИНН {act.buyer['inn']})"])
    ws.append([])
    ws.append([f"По данным {act.seller['name']}, руб.", None, None, None, f"По данным {act.buyer['name']}, руб."])
    ws.append(["Дата", "Документ", "Дебет", "Кредит", "Дата", "Документ", "Дебет", "Кредит"])
    header_row = ws.max_row

    def row(day: Any, title: str, debit: int | None, credit: int | None, strong: bool = False) -> None:
        ws.append([day, title, None if debit is None else debit / 100, None if credit is None else credit / 100])
        for cell in ws[ws.max_row][:8]:
            cell.border = box
            if strong:
                cell.font = bold
        ws.cell(ws.max_row, 1).number_format = "DD.MM.YYYY"
        for col in (3, 4):
            ws.cell(ws.max_row, col).number_format = money_format

    def saldo(title: str, value: int) -> None:
        row(None, title, value if value > 0 else None, -value if value < 0 else None, strong=True)

    saldo("Сальдо начальное", ctx["opening"])
    for line in ctx["lines"]:
        row(line["day"], line["title"], line["debit"] or None, line["credit"] or None)
    row(None, "Обороты за период", ctx["debit_total"], ctx["credit_total"], strong=True)
    saldo("Сальдо конечное", ctx["closing"])
    ws.append([])
    ws.append([f"По данным {act.seller['name']} на {act.end:%d.%m.%Y} {ctx['verdict']}"])
    ws.append([])
    ws.append([f"От {act.seller['name']}", None, None, None, f"От {act.buyer['name']}"])
    ws.append(["Руководитель", f"________________ ({act.seller['director']})", None, None, "________________"])
    ws.append(["Главный бухгалтер", f"________________ ({act.seller['accountant']})", None, None, "________________"])
    for cell in ws[header_row]:
        cell.font = bold
        cell.alignment = Alignment(wrap_text=True)
    for letter, width in zip("ABCDEFGH", (12, 60, 14, 14, 12, 40, 14, 14), strict=True):
        ws.column_dimensions[letter].width = width
    ws["A1"].font = Font(bold=True, size=12)
    # openpyxl stamps "now" into the file's properties; the акт's own date keeps the bytes the same for the same data.
    moment = datetime(act.end.year, act.end.month, act.end.day)
    wb.properties.created = wb.properties.modified = moment
    wb.properties.creator = act.seller["name"]
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()
