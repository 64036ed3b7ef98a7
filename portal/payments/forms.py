"""The sandbox acquirer's card form; the rules themselves live in providers/sandbox.py (check_card)."""

from __future__ import annotations

from wtforms import StringField

from portal.textinput import PortalForm


class SandboxCardForm(PortalForm):
    number = StringField(
        "Номер карты",
        render_kw={
            "autocomplete": "cc-number",
            "inputmode": "numeric",
            "placeholder": "0000 0000 0000 0000",
            "autofocus": True,
        },
    )
    expiry = StringField(
        "Срок действия",
        render_kw={"autocomplete": "cc-exp", "inputmode": "numeric", "placeholder": "ММ/ГГ"},
    )
    cvc = StringField(
        "CVC",
        render_kw={"autocomplete": "cc-csc", "inputmode": "numeric", "placeholder": "123"},
    )


class SandboxActionForm(PortalForm):
    """The «ЮMoney» and «Отменить» buttons: nothing but the CSRF token."""
