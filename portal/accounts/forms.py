"""Sign-in, registration and account-switch forms."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, StringField
from wtforms.validators import DataRequired, Email, Length, Optional, ValidationError

from portal.accounts.phone import InvalidPhone, normalize_phone
from portal.textinput import PortalForm, strip_separators


class PhoneField(StringField):
    """Accepts a phone as people type it; `.data` becomes E.164 when valid."""

    def pre_validate(self, form: FlaskForm) -> None:
        try:
            self.data = normalize_phone(self.data or "")
        except InvalidPhone as exc:
            raise ValidationError(str(exc)) from None


class PhoneForm(PortalForm):
    phone = PhoneField(
        "Номер телефона",
        render_kw={
            "autocomplete": "tel",
            "inputmode": "tel",
            "placeholder": "+7 999 123-45-67",
            "autofocus": True,
        },
    )


class CodeForm(PortalForm):
    code = StringField(
        "Код из SMS",
        validators=[
            DataRequired("Введите код из SMS."),
            Length(min=6, max=6, message="Код состоит из 6 цифр."),
        ],
        # «694 419» as the SMS shows it, or pasted with a dash: the six digits are what counts.
        filters=[strip_separators],
        render_kw={
            "autocomplete": "one-time-code",
            "inputmode": "numeric",
            "autofocus": True,
        },
    )

    def validate_code(self, field: StringField) -> None:
        code = (field.data or "").strip()
        if not (code.isascii() and code.isdigit()):
            raise ValidationError("Код состоит из 6 цифр.")


class RegisterForm(PortalForm):
    name = StringField(
        "Ваше имя",
        validators=[DataRequired("Укажите имя."), Length(max=200, message="Не длиннее 200 символов.")],
        render_kw={"autocomplete": "name", "autofocus": True},
    )
    company = StringField(
        "Название компании",
        validators=[
            DataRequired("Укажите название компании."),
            Length(max=200, message="Не длиннее 200 символов."),
        ],
        render_kw={"autocomplete": "organization"},
    )
    email = EmailField(
        "Электронная почта (необязательно)",
        validators=[Optional(), Email("Проверьте адрес почты: например, anna@example.ru.")],
        # A pasted address often brings a space along; it is not part of the address.
        filters=[lambda v: v.strip() if isinstance(v, str) else v],
        render_kw={"autocomplete": "email"},
    )


class SwitchAccountForm(PortalForm):
    account_id = HiddenField(validators=[DataRequired()])


class EmptyForm(PortalForm):
    """For POST-only buttons (sign-out, confirmations): CSRF and nothing else."""


class ProfileForm(PortalForm):
    """The person's own name and e-mail: what they see of themselves; companies keep their own record."""

    name = StringField(
        "Ваше имя",
        validators=[DataRequired("Укажите имя."), Length(max=200, message="Не длиннее 200 символов.")],
        render_kw={"autocomplete": "name"},
    )
    email = EmailField(
        "Электронная почта (необязательно)",
        validators=[Optional(), Length(max=254, message="Не длиннее 254 символов."), Email("Проверьте адрес почты.")],
        filters=[lambda v: v.strip() if isinstance(v, str) else v],
        render_kw={"autocomplete": "email"},
    )
