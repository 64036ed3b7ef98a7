"""The one interface every payment provider implements, the facts it reports, and the errors it raises."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from portal.money import kopecks_to_decimal_str

# Statuses as YooKassa names them; the sandbox reports the same ones.
PENDING = "pending"
WAITING_FOR_CAPTURE = "waiting_for_capture"
SUCCEEDED = "succeeded"
CANCELED = "canceled"
PROVIDER_STATUSES = (PENDING, WAITING_FOR_CAPTURE, SUCCEEDED, CANCELED)

# Provider payment ids are opaque, but a bounded, boring alphabet keeps garbage out of logs, URLs and the database.
PAYMENT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# YooKassa's cancellation reasons (cancellation_details.reason) in words a payer understands.
CANCELLATION_REASONS: dict[str, str] = {
    "3d_secure_failed": "Не пройдена проверка 3-D Secure. Попробуйте ещё раз или оплатите другой картой.",
    "call_issuer": "Банк отклонил оплату. Позвоните в банк, выпустивший карту, или оплатите другой картой.",
    "canceled_by_merchant": "Платёж отменён продавцом.",
    "card_expired": "Истёк срок действия карты. Оплатите другой картой.",
    "country_forbidden": "Оплата картой, выпущенной в этой стране, недоступна. Оплатите другой картой.",
    "deal_expired": "Истёк срок сделки.",
    "expired_on_capture": "Истёк срок подтверждения платежа.",
    "expired_on_confirmation": "Время на оплату истекло: платёж не был подтверждён. Попробуйте ещё раз.",
    "fraud_suspected": "Платёж заблокирован из-за подозрения в мошенничестве. Оплатите другим способом.",
    "general_decline": "Банк отклонил оплату без объяснения причин. Обратитесь в банк или оплатите другой картой.",
    "identification_required": "Кошелёк ЮMoney не идентифицирован: превышен лимит для анонимного кошелька.",
    "insufficient_funds": "Недостаточно средств. Пополните карту или оплатите другой картой.",
    "internal_timeout": "Платёжная система не ответила вовремя. Попробуйте ещё раз.",
    "invalid_card_number": "Неверный номер карты.",
    "invalid_csc": "Неверный код CVC/CVV.",
    "issuer_unavailable": "Банк, выпустивший карту, недоступен. Попробуйте позже или оплатите другой картой.",
    "payment_method_limit_exceeded": "Исчерпан лимит платежей для этой карты или кошелька.",
    "payment_method_restricted": "Операции этой картой или кошельком запрещены. Обратитесь в банк.",
    "permission_revoked": "Разрешение на автоплатежи отозвано.",
    "unsupported_mobile_operator": "Оплата с баланса этого оператора недоступна.",
    # Reasons of the portal and of the local sandbox, not YooKassa's.
    "payer_canceled": "Оплата отменена на странице платёжной системы.",
    "provider_unavailable": "Платёжная система не ответила. Заказ не оплачен; попробуйте ещё раз.",
    "provider_rejected": "Платёжная система отклонила платёж. Попробуйте позже или обратитесь в поддержку.",
    "superseded": "Эта попытка оплаты заменена другой.",
}


# The seller's VAT_RATE setting → the receipt's vat_code, in YooKassa's table (the sandbox uses the same):
# 1 «без НДС», 2 «0 %», 3 «10 %», 4 «20 %», 11 «22 %» (from 2026).
VAT_CODES: dict[str, int] = {"": 1, "0": 2, "10": 3, "20": 4, "22": 11}


def vat_code_for(vat_rate: str) -> int:
    rate = (vat_rate or "").strip().rstrip("%").strip()
    if rate not in VAT_CODES:
        raise ValueError(f"VAT_RATE={vat_rate!r} has no receipt vat_code; supported: {sorted(VAT_CODES)}")
    return VAT_CODES[rate]


def reason_text(code: str | None) -> str:
    if not code:
        return "Платёж не прошёл."
    return CANCELLATION_REASONS.get(code, f"Платёж не прошёл (код причины: {code}).")


class ProviderError(Exception):
    """The provider could not do what was asked; `message` is for people (Russian)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ProviderUnavailable(ProviderError):
    """Time-out, refused connection, 5xx or 429: nothing is known; retry later with the same idempotence key."""


class ProviderRejected(ProviderError):
    """The provider refused the request itself (4xx): retrying the same request will not help."""


class PaymentNotFound(ProviderError):
    """The provider has no payment with this id."""


class NotificationRejected(Exception):
    """A notification that must not be acted on; the webhook answers `status_code` with `message`."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True)
class Customer:
    """Whom the 54-ФЗ receipt goes to: an e-mail if known, else the phone."""

    email: str | None = None
    phone: str | None = None  # E.164, "+79991234567"
    # A company paying by card with its requisites: 54-ФЗ puts the buyer's ИНН and name on the receipt.
    inn: str | None = None
    full_name: str | None = None

    def receipt_customer(self) -> dict[str, str]:
        """The receipt's `customer` object in YooKassa's shape (the sandbox records the same)."""
        out: dict[str, str] = {}
        if self.full_name:
            out["full_name"] = self.full_name[:256]
        if self.inn:
            out["inn"] = self.inn
        if self.email:
            out["email"] = self.email
        elif self.phone:
            out["phone"] = self.phone.lstrip("+")
        return out


@dataclass(frozen=True)
class PaymentInfo:
    """A payment as the provider's own API reports it: the only source of truth the portal acts on."""

    id: str
    status: str
    amount: int  # kopecks
    currency: str
    metadata: dict[str, str]
    reason: str | None = None  # cancellation_details.reason
    method: str | None = None  # payment_method.type
    paid: bool = False
    receipt_url: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class NotificationEvent:
    """A notification that passed the provider's authenticity check; its body is still only a hint."""

    provider: str
    event: str
    provider_payment_id: str
    body: dict[str, Any]
    body_sha256: str


class PaymentProvider(Protocol):
    name: str

    def create_payment(self, order: Any, return_url: str, idempotence_key: str, customer: Customer) -> tuple[str, str]:
        """Create (or, for a repeated key, find) the provider's payment: (provider_payment_id, confirmation_url)."""
        ...

    def get_payment(self, provider_payment_id: str) -> PaymentInfo:
        """Re-read a payment through the provider's API."""
        ...

    def refund(self, provider_payment_id: str, amount: int, idempotence_key: str, customer: Customer) -> str:
        """Return `amount` kopecks of a succeeded payment to the payer (with the refund receipt): the refund's id."""
        ...

    def parse_notification(self, body: bytes, headers: Mapping[str, str], remote_addr: str | None) -> NotificationEvent:
        """Verify that a notification comes from the provider; raises NotificationRejected."""
        ...


def amount_value(kopecks: int) -> str:
    """846450 → "8464.50", the API's amount.value."""
    return kopecks_to_decimal_str(kopecks)


def parse_amount_value(value: Any) -> int:
    """ "8464.50" → 846450; anything that is not a non-negative amount with at most two decimals is refused."""
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValueError(f"not an amount: {value!r}") from None
    if not d.is_finite() or d < 0 or d != d.quantize(Decimal("0.01")):
        raise ValueError(f"not an amount: {value!r}")
    return int(d * 100)


def payment_info_from_object(obj: Mapping[str, Any], receipt_url: str | None = None) -> PaymentInfo:
    """Read the fields the portal needs from a payment object in YooKassa's JSON shape."""
    try:
        payment_id = obj["id"]
        status = obj["status"]
        amount = obj["amount"]
        value = parse_amount_value(amount["value"])
        currency = str(amount["currency"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProviderError(f"Платёжная система вернула непонятный ответ: {exc}") from None
    if not isinstance(payment_id, str) or not PAYMENT_ID_RE.match(payment_id) or status not in PROVIDER_STATUSES:
        raise ProviderError("Платёжная система вернула непонятный ответ: неизвестный платёж или статус.")
    metadata = obj.get("metadata") or {}
    cancellation = obj.get("cancellation_details") or {}
    method = obj.get("payment_method") or {}
    return PaymentInfo(
        id=payment_id,
        status=status,
        amount=value,
        currency=currency,
        metadata={str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, Mapping) else {},
        reason=cancellation.get("reason") if isinstance(cancellation, Mapping) else None,
        method=method.get("type") if isinstance(method, Mapping) else None,
        paid=bool(obj.get("paid", False)),
        receipt_url=receipt_url,
        raw=dict(obj),
    )


def payment_description(order: Any) -> str:
    """What the payer sees at the provider and in the receipt (both allow 128 characters)."""
    if getattr(order, "kind", None) == "upgrade":
        until = order.last_day.strftime("%d.%m.%Y")
        text = f"Лицензия на мессенджер: переход на тариф «{order.plan_title}» до {until}, заказ № {order.id}"
    else:
        text = f"Лицензия на мессенджер, тариф «{order.plan_title}», {order.months} мес., заказ № {order.id}"
    return text[:128]


PAYMENT_EVENTS = ("payment.succeeded", "payment.canceled", "payment.waiting_for_capture")


# YooKassa's event names: "payment.succeeded", "refund.succeeded", "deal.closed", "payout.canceled", …
EVENT_RE = re.compile(r"^[a-z_]{1,32}\.[a-z_]{1,32}$")


def parse_notification_body(provider: str, body: bytes) -> NotificationEvent:
    """The common shape {"type": "notification", "event": "payment.…", "object": {"id": …}}; nothing else in it
    is used, because the payment is re-read through the provider's API before anything is done."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise NotificationRejected(400, "Тело уведомления — не JSON.") from None
    if not isinstance(data, dict) or data.get("type") != "notification":
        raise NotificationRejected(400, "Это не уведомление: нет поля type=notification.")
    event = data.get("event")
    if not isinstance(event, str) or not EVENT_RE.match(event):
        raise NotificationRejected(400, "Неизвестное событие уведомления.")
    obj = data.get("object")
    if event.startswith("payment."):
        payment_id = obj.get("id") if isinstance(obj, dict) else None
    elif event.startswith("refund."):
        payment_id = obj.get("payment_id") if isinstance(obj, dict) else None
    else:
        # deal.*, payout.* and whatever the provider adds later: acknowledged and kept, nothing to re-read here.
        payment_id = ""
    if event.startswith(("payment.", "refund.")) and (
        not isinstance(payment_id, str) or not PAYMENT_ID_RE.match(payment_id)
    ):
        raise NotificationRejected(400, "В уведомлении нет идентификатора платежа.")
    return NotificationEvent(
        provider=provider,
        event=event,
        provider_payment_id=payment_id,
        body=data,
        body_sha256=hashlib.sha256(body).hexdigest(),
    )
