"""Checkout form: what is bought comes from the server's own numbers; the form carries only the choice."""

from __future__ import annotations

from wtforms import BooleanField, HiddenField, RadioField
from wtforms.validators import DataRequired, ValidationError

from portal.billing.orders import IDEMPOTENCY_KEY_RE
from portal.textinput import PortalForm


class CheckoutForm(PortalForm):
    plan = HiddenField()
    months = HiddenField()
    idempotency_key = HiddenField()
    # What the page showed; a different server figure means the page is stale (or edited): ask again.
    shown_amount = HiddenField()
    payer_type = RadioField("Кто платит", choices=[], validate_choice=False)
    # Card only: a company paying with its card gets a УПД, and the receipt carries its ИНН and name.
    as_company = BooleanField("Оплачиваю как компания — нужен УПД")
    # Card only, the owner only: the card is saved and the same plan renewed before each period ends (the terms are
    # shown beside the box and kept with the consent).
    autopay = BooleanField("Продлевать автоматически")
    accept_license = BooleanField(
        "Я принимаю условия лицензионного договора (оферты)",
        validators=[DataRequired("Чтобы оплатить, примите условия лицензионного договора.")],
    )

    def validate_payer_type(self, field: RadioField) -> None:
        if field.data not in {value for value, _label in field.choices}:
            raise ValidationError("Выберите, кто платит.")

    def validate_idempotency_key(self, field: HiddenField) -> None:
        if not IDEMPOTENCY_KEY_RE.match(field.data or ""):
            raise ValidationError("Форма оплаты повреждена. Откройте страницу оплаты заново.")
