"""The sandbox acquirer's card form; the rules themselves live in providers/sandbox.py (check_card)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import StringField


class SandboxCardForm(FlaskForm):
    number = StringField(
        "Номер карты",
        render_kw={
            "autocomplete": "cc-number",
            "inputmode": "numeric",
            "placeholder": "0000 0000 0000 0000",
            "maxlength": 23,
            "autofocus": True,
        },
    )
    expiry = StringField(
        "Срок действия",
        render_kw={"autocomplete": "cc-exp", "inputmode": "numeric", "placeholder": "ММ/ГГ", "maxlength": 5},
    )
    cvc = StringField(
        "CVC",
        render_kw={"autocomplete": "cc-csc", "inputmode": "numeric", "placeholder": "123", "maxlength": 3},
    )


class SandboxActionForm(FlaskForm):
    """The «ЮMoney» and «Отменить» buttons: nothing but the CSRF token."""
