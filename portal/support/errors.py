"""Support's refusals, typed so views map them to statuses, and the reason every staff action must give."""

from __future__ import annotations

from portal.support.models import SupportRequest
from portal.timeutil import format_date

MAX_REASON = 1000
MAX_COMMENT = 2000


class SupportError(ValueError):
    """The action is refused and nothing changed; the message is for the person."""


class RequestAlreadyOpen(SupportError):
    """The same kind of request is already open: the owner is shown it, and support is not asked twice."""

    def __init__(self, existing: SupportRequest) -> None:
        self.existing = existing
        super().__init__(
            f"Заявка № {existing.id} «{existing.kind_title}» уже отправлена {format_date(existing.created_at)} "
            f"(статус: {existing.status_title.lower()}). Новая не создана: поддержка ответит на эту."
        )


class TooManyRequests(SupportError):
    """SUPPORT_REQUESTS_PER_DAY reached: each request mails support and waits in the staff queue."""


class AmountMismatchError(SupportError):
    """The payment's amount differs from the invoice's: linking needs an explicit confirmation."""


class InvoiceNotPayable(SupportError):
    """The invoice is already paid or canceled: the staff member's page is out of date (409), not their input."""


def clean_reason(reason: str | None, what: str = "причину") -> str:
    text = " ".join((reason or "").split())
    if not text:
        raise SupportError(f"Укажите {what}: она попадёт в журнал действий.")
    if len(text) > MAX_REASON:
        raise SupportError(f"Слишком длинный текст: не больше {MAX_REASON} символов.")
    return text
