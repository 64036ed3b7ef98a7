"""The local sandbox acquirer: its own payment ledger, a hosted payment page's logic, and signed notifications.

It behaves like YooKassa from the portal's side (same JSON shapes, idempotence keys, re-readable payments, a
notification to the webhook over HTTP) so that the portal's payment path is the same code in the demo, in tests and
in production. It takes no money and the configuration refuses it in production.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import requests
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from portal.db import Database, utcnow
from portal.payments.models import SandboxPayment
from portal.payments.providers.base import (
    CANCELED,
    PAYMENT_ID_RE,
    PENDING,
    SUCCEEDED,
    Customer,
    NotificationEvent,
    NotificationRejected,
    PaymentInfo,
    PaymentNotFound,
    ProviderRejected,
    amount_value,
    parse_notification_body,
    payment_description,
    payment_info_from_object,
)
from portal.timeutil import msk_date

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Sandbox-Signature"
WEBHOOK_PATH = "/payments/webhook/sandbox"
# Like a real acquirer, a payment nobody confirms is canceled after a while.
PENDING_TTL = timedelta(hours=1)

# Test cards, as acquirers publish them: every other Luhn-valid number is accepted.
DECLINING_CARDS: dict[str, str] = {
    "4000000000000002": "insufficient_funds",
    "4000000000000069": "card_expired",
    "4000000000000119": "issuer_unavailable",
    "4000000000003220": "3d_secure_failed",
}
SUCCESS_CARD = "4111111111111111"
# Saved for autopayment, a card pays at checkout and declines every later charge (as Stripe's 4000 0000 0000 0341).
DECLINING_WHEN_SAVED: dict[str, str] = {"4000000000000341": "insufficient_funds"}
SAVED_PREFIX = "pm_"  # a saved method's id: the checkout payment's id behind this prefix

Deliver = Callable[[str, bytes, dict[str, str]], int]


class CardError(ValueError):
    """A card field is filled in wrong; `field` names it, the message is for the payer."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class UnknownPageAction(ValueError):
    """The hosted page was sent a button it does not have."""


@dataclass(frozen=True)
class PageAnswer:
    """The hosted page's answer to a button: where to send the payer back, or the card field to correct."""

    return_url: str | None = None
    field: str | None = None
    message: str | None = None


def luhn_ok(digits: str) -> bool:
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


@dataclass(frozen=True)
class Card:
    number: str
    expiry_month: int
    expiry_year: int

    @property
    def first6(self) -> str:
        return self.number[:6]

    @property
    def last4(self) -> str:
        return self.number[-4:]


def check_card(number: str, expiry: str, cvc: str, today: date) -> Card:
    """Validate the form as an acquirer's page does; raises CardError naming the first wrong field."""
    digits = "".join(ch for ch in (number or "") if ch not in " -")
    if not digits:
        raise CardError("number", "Введите номер карты.")
    if not digits.isdigit() or not luhn_ok(digits):
        raise CardError("number", "Неверный номер карты: проверьте цифры.")
    raw = (expiry or "").replace(" ", "")
    parts = raw.split("/")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or len(parts[0]) not in (1, 2) or len(parts[1]) != 2:
        raise CardError("expiry", "Срок действия — в формате ММ/ГГ, например 12/29.")
    month, year = int(parts[0]), 2000 + int(parts[1])
    if not 1 <= month <= 12:
        raise CardError("expiry", "Месяц срока действия — от 01 до 12.")
    if (year, month) < (today.year, today.month):
        raise CardError("expiry", "Срок действия карты истёк.")
    if not (cvc or "").isdigit() or len(cvc) != 3:
        raise CardError("cvc", "CVC — три цифры с обратной стороны карты.")
    return Card(number=digits, expiry_month=month, expiry_year=year)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def http_deliver(url: str, body: bytes, headers: dict[str, str]) -> int:
    """Send a notification as a provider does: one POST with a short time-out; the caller logs failures."""
    resp = requests.post(url, data=body, headers=headers, timeout=10)
    return resp.status_code


def _iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z") if moment else None


class SandboxProvider:
    """The sandbox as the portal sees it (PaymentProvider), plus what its hosted page needs."""

    name = "sandbox"

    def __init__(
        self,
        database: Database,
        *,
        base_url: str,
        secret: str,
        merchant: str,
        merchant_inn: str = "",
        vat_code: int = 1,
        deliver: Deliver = http_deliver,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.database = database
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.merchant = merchant
        self.merchant_inn = merchant_inn
        self.vat_code = vat_code
        self.deliver = deliver
        self.clock = clock

    # --- PaymentProvider -------------------------------------------------------------------------------------

    def create_payment(
        self,
        order: Any,
        return_url: str,
        idempotence_key: str,
        customer: Customer,
        *,
        save_payment_method: bool = False,
    ) -> tuple[str, str]:
        for _ in range(2):
            try:
                with self.database.session() as s:
                    row = s.scalars(
                        sa.select(SandboxPayment).where(SandboxPayment.idempotence_key == idempotence_key)
                    ).first()
                    if row is None:
                        receipt = {
                            "customer": _contact(customer)
                            | {k: v for k, v in (("inn", customer.inn), ("full_name", customer.full_name)) if v},
                            "vat_code": self.vat_code,
                        } | ({"save_payment_method": True} if save_payment_method else {})
                        row = self._new_payment(order, idempotence_key, receipt, return_url=return_url, status=PENDING)
                        s.add(row)
                    return row.id, self.payment_page_url(row.id)
            except IntegrityError:
                continue  # the same key was used at the same moment: the other request's payment is the one
        raise RuntimeError("sandbox: idempotence key race did not settle")

    def refund(self, provider_payment_id: str, amount: int, idempotence_key: str, customer: Customer) -> str:
        """Like the real provider: only a succeeded payment, never more than it brought, the same key the same
        refund. The sandbox keeps its refunds beside the payment, in its own records."""
        with self.database.session() as s:
            row = s.get(SandboxPayment, provider_payment_id, with_for_update=True)
            if row is None:
                raise PaymentNotFound("Платёж не найден.")
            receipt = dict(row.receipt or {})
            refunds = list(receipt.get("refunds", []))
            for done in refunds:
                if done["key"] == idempotence_key:
                    return str(done["id"])
            if row.status != SUCCEEDED:
                raise ProviderRejected("Вернуть можно только проведённый платёж.")
            if amount <= 0 or sum(int(r["amount"]) for r in refunds) + amount > row.amount:
                raise ProviderRejected("Сумма возврата больше суммы платежа.")
            refund_id = "sbx_rf_" + secrets.token_hex(10)
            refunds.append(
                {
                    "id": refund_id,
                    "key": idempotence_key,
                    "amount": amount,
                    "customer": customer.email or customer.phone,
                }
            )
            receipt["refunds"] = refunds
            row.receipt = receipt
            return refund_id

    def get_payment(self, provider_payment_id: str) -> PaymentInfo:
        if not PAYMENT_ID_RE.match(provider_payment_id or ""):
            raise PaymentNotFound("Платёж не найден.")
        with self.database.session() as s:
            row = s.get(SandboxPayment, provider_payment_id, with_for_update=True)
            if row is None:
                raise PaymentNotFound("Платёж не найден.")
            self._expire_if_stale(row)
            return self.info(row)

    def parse_notification(self, body: bytes, headers: Mapping[str, str], remote_addr: str | None) -> NotificationEvent:
        given = headers.get(SIGNATURE_HEADER) or ""
        if not given:
            raise NotificationRejected(401, "Нет подписи уведомления.")
        if not hmac.compare_digest(given.encode(), sign(self.secret, body).encode()):
            raise NotificationRejected(401, "Подпись уведомления неверна.")
        return parse_notification_body(self.name, body)

    # --- СБП: a QR code the payer's bank app scans -----------------------------------------------------------------

    def create_sbp_payment(
        self,
        order: Any,
        return_url: str,
        idempotence_key: str,
        customer: Customer,
        *,
        save_payment_method: bool = False,
    ) -> tuple[str, str]:
        """As YooKassa with `payment_method_data: sbp` and a QR confirmation: (payment id, the QR's data), where the
        data is the sandbox's «bank app» page a phone opens after scanning. Saving binds the payer's bank account
        for autopayment (YooKassa's СБП with save_payment_method), which the bank app asks the payer to confirm."""
        payment_id, _url = self.create_payment(
            order, return_url, idempotence_key, customer, save_payment_method=save_payment_method
        )
        with self.database.session() as s:
            row = s.get(SandboxPayment, payment_id, with_for_update=True)
            assert row is not None
            if row.status == PENDING and row.method is None:
                row.method = "sbp"  # chosen at creation, as YooKassa reports payment_method for a pending СБП payment
            if row.method != "sbp":
                raise ProviderRejected("Этот платёж создан для другого способа оплаты.")
        return payment_id, self.sbp_page_url(payment_id)

    def sbp_page_url(self, payment_id: str) -> str:
        return f"{self.base_url}/sandbox/sbp/{payment_id}"

    # --- the hosted payment page -------------------------------------------------------------------------------

    def payment_page_url(self, payment_id: str) -> str:
        return f"{self.base_url}/sandbox/pay/{payment_id}"

    def receipt_url(self, payment_id: str) -> str:
        return f"{self.base_url}/sandbox/receipt/{payment_id}"

    def find(self, payment_id: str) -> SandboxPayment | None:
        if not PAYMENT_ID_RE.match(payment_id or ""):
            return None
        with self.database.session() as s:
            row = s.get(SandboxPayment, payment_id)
            if row is not None:
                self._expire_if_stale(row)
            return row

    def complete(
        self,
        payment_id: str,
        *,
        method: str,
        card: Card | None = None,
        cancel: bool = False,
        decline: str | None = None,
    ) -> tuple[SandboxPayment, bool]:
        """The payer pressed Pay (or Cancel): settle the payment once. Returns (row, changed)."""
        with self.database.session() as s:
            row = s.get(SandboxPayment, payment_id, with_for_update=True)
            if row is None:
                raise PaymentNotFound("Платёж не найден.")
            self._expire_if_stale(row)
            if row.status != PENDING:
                return row, False
            row.method = method
            row.updated_at = self.clock()
            if card is not None:
                row.card_last4 = card.last4
            if not decline:
                decline = "payer_canceled" if cancel else (DECLINING_CARDS.get(card.number) if card else None)
            if decline:
                row.status = CANCELED
                row.cancellation_party = "merchant" if cancel else "payment_network"
                row.cancellation_reason = decline
            else:
                row.status = SUCCEEDED
                row.paid = True
                if card is not None and (row.receipt or {}).get("save_payment_method"):
                    # The sandbox's own record of the saved card: how its later charges end, never its number.
                    decline_later = DECLINING_WHEN_SAVED.get(card.number) or DECLINING_CARDS.get(card.number)
                    row.receipt = dict(row.receipt or {}) | {"saved": {"decline": decline_later}}
                elif method == "sbp" and (row.receipt or {}).get("save_payment_method"):
                    # A bank account bound through СБП: its later charges go through.
                    row.receipt = dict(row.receipt or {}) | {"saved": {"decline": None}}
            return row, True

    def answer_page(self, payment_id: str, action: str | None, number: str, expiry: str, cvc: str) -> PageAnswer:
        """The payer pressed a button of the card page: pay by card (once its fields are right), by ЮMoney, or
        cancel; any other button raises UnknownPageAction."""
        if action == "card":
            try:
                card = check_card(number, expiry, cvc, msk_date(utcnow()))
            except CardError as exc:
                return PageAnswer(field=exc.field, message=exc.message)
            return self._settle_from_page(payment_id, method="bank_card", card=card)
        if action == "yoo_money":
            return self._settle_from_page(payment_id, method="yoo_money")
        if action == "cancel":
            return self._settle_from_page(payment_id, method="bank_card", cancel=True)
        raise UnknownPageAction(action)

    def _settle_from_page(
        self, payment_id: str, *, method: str, card: Card | None = None, cancel: bool = False
    ) -> PageAnswer:
        payment, changed = self.complete(payment_id, method=method, card=card, cancel=cancel)
        if changed:
            # Exactly as a provider does: the notification goes to the portal's webhook over HTTP before the payer
            # is sent back; if it is lost, the return page's status check re-reads the payment instead.
            status = self.notify(payment_id)
            log.info("sandbox: payment %s %s, notification answered %s", payment_id, payment.status, status)
        return PageAnswer(return_url=payment.return_url)

    def charge_saved(self, order: Any, method_id: str, idempotence_key: str, customer: Customer) -> PaymentInfo:
        """A repeat charge of a saved card, no payer present (YooKassa's payment_method_id): settled at once, by how
        the saved card behaves; the same key gives the same payment."""
        with self.database.session() as s:
            row = s.scalars(sa.select(SandboxPayment).where(SandboxPayment.idempotence_key == idempotence_key)).first()
            if row is not None:
                return self.info(row)
            origin = s.get(SandboxPayment, method_id.removeprefix(SAVED_PREFIX))
            saved = (origin.receipt or {}).get("saved") if origin is not None else None
            if origin is None or not method_id.startswith(SAVED_PREFIX) or saved is None:
                raise ProviderRejected("Сохранённый способ оплаты не найден.")
            decline = saved.get("decline")
            receipt = {"customer": _contact(customer), "vat_code": self.vat_code, "payment_method_id": method_id}
            row = self._new_payment(
                order,
                idempotence_key,
                receipt,
                return_url="",
                status=CANCELED if decline else SUCCEEDED,
                paid=not decline,
                method="bank_card",
                card_last4=origin.card_last4,
                cancellation_party="payment_network" if decline else None,
                cancellation_reason=decline,
            )
            s.add(row)
            s.flush()
            return self.info(row)

    def _new_payment(self, order: Any, idempotence_key: str, receipt: dict[str, Any], **fields: Any) -> SandboxPayment:
        """A payment of the sandbox's own ledger for this order: a fresh id, the order's amount and description."""
        now = self.clock()
        return SandboxPayment(
            id="sbx_" + secrets.token_hex(12),
            idempotence_key=idempotence_key,
            amount=order.amount,
            currency="RUB",
            description=payment_description(order),
            merchant=self.merchant,
            payment_metadata={"order_id": str(order.id), "account_id": str(order.account_id)},
            receipt=receipt,
            created_at=now,
            updated_at=now,
            **fields,
        )

    def notify(self, payment_id: str) -> int | None:
        """Send the portal the notification of a settled payment, signed, over HTTP; None if it could not."""
        with self.database.session() as s:
            row = s.get(SandboxPayment, payment_id)
            if row is None or row.status == PENDING:
                return None
            body = self.notification_body(row)
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self.secret, body)}
        url = self.base_url + WEBHOOK_PATH
        try:
            status = self.deliver(url, body, headers)
        except requests.RequestException as exc:
            # A real provider retries later; here the payer's return page re-reads the payment instead.
            log.warning("sandbox: notification for %s to %s failed: %s", payment_id, url, exc)
            return None
        if status != 200:
            log.warning("sandbox: notification for %s answered %s", payment_id, status)
        return status

    def notification_body(self, row: SandboxPayment) -> bytes:
        import json

        event = "payment.succeeded" if row.status == SUCCEEDED else "payment.canceled"
        payload = {"type": "notification", "event": event, "object": self.payment_object(row)}
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()

    # --- the provider's API objects -----------------------------------------------------------------------------

    def payment_object(self, row: SandboxPayment) -> dict[str, Any]:
        """The payment in YooKassa's JSON shape (no card number beyond first6/last4, as providers do)."""
        obj: dict[str, Any] = {
            "id": row.id,
            "status": row.status,
            "paid": row.paid,
            "amount": {"value": amount_value(row.amount), "currency": row.currency},
            "description": row.description,
            "metadata": dict(row.payment_metadata or {}),
            "created_at": _iso(row.created_at),
            "test": True,
            "refundable": row.status == SUCCEEDED,
            "recipient": {"account_id": "sandbox", "gateway_id": "sandbox"},
        }
        if row.status == PENDING and row.method == "sbp":
            obj["confirmation"] = {"type": "qr", "confirmation_data": self.sbp_page_url(row.id)}
        elif row.status == PENDING:
            obj["confirmation"] = {"type": "redirect", "confirmation_url": self.payment_page_url(row.id)}
        if row.method:
            saved = row.status == SUCCEEDED and "saved" in (row.receipt or {})
            method: dict[str, Any] = {
                "type": row.method,
                "id": SAVED_PREFIX + row.id if saved else row.id,
                "saved": saved,
            }
            if row.method == "bank_card" and row.card_last4:
                method["title"] = f"Bank card *{row.card_last4}"
                method["card"] = {"last4": row.card_last4}
            obj["payment_method"] = method
        if row.status == SUCCEEDED:
            obj["captured_at"] = _iso(row.updated_at)
            obj["income_amount"] = obj["amount"]
            obj["receipt_registration"] = "succeeded"
        if row.status == CANCELED:
            obj["cancellation_details"] = {"party": row.cancellation_party, "reason": row.cancellation_reason}
        return obj

    def info(self, row: SandboxPayment) -> PaymentInfo:
        receipt = self.receipt_url(row.id) if row.status == SUCCEEDED else None
        return payment_info_from_object(self.payment_object(row), receipt_url=receipt)

    def _expire_if_stale(self, row: SandboxPayment) -> None:
        if row.status == PENDING and row.created_at + PENDING_TTL <= self.clock():
            row.status = CANCELED
            row.cancellation_party = "yoo_money"
            row.cancellation_reason = "expired_on_confirmation"
            row.updated_at = self.clock()


def _contact(customer: Customer) -> dict[str, str | None]:
    """Where the receipt goes, as the provider takes it: the e-mail, or the phone when there is none."""
    return {"email": customer.email} if customer.email else {"phone": customer.phone}
