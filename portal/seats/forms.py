"""Team page forms: add a user, change a role, confirm going beyond the plan."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, ValidationError

from portal.accounts.forms import PhoneField
from portal.accounts.models import Role
from portal.seats.errors import InvalidUserData
from portal.seats.rules import clean_email
from portal.textinput import PortalForm

ROLES = (Role.MEMBER, Role.ACCOUNTANT, Role.OWNER)


def role_choices() -> list[SelectChoice]:
    return [SelectChoice(r.value, r.title) for r in ROLES]


class RoleField(SelectField):
    """A role select whose refusal speaks Russian (WTForms' own message is English)."""

    def pre_validate(self, form: FlaskForm) -> None:
        if self.data not in {r.value for r in ROLES}:
            raise ValidationError("Выберите роль: владелец, бухгалтер или сотрудник.")


class AddUserForm(PortalForm):
    phone = PhoneField(
        "Телефон",
        render_kw={"autocomplete": "off", "inputmode": "tel", "placeholder": "+7 999 123-45-67"},
    )
    name = StringField(
        "Имя и фамилия",
        validators=[DataRequired("Укажите имя пользователя."), Length(max=200, message="Не длиннее 200 символов.")],
        render_kw={"autocomplete": "off", "placeholder": "Ирина Белова"},
    )
    role = RoleField("Роль", choices=role_choices(), default=Role.MEMBER.value)
    email = EmailField(
        "Почта (необязательно)",
        render_kw={"autocomplete": "off", "placeholder": "irina@example.ru"},
    )
    # Set by the confirmation step: the owner has been told the account will go beyond its plan.
    confirmed = HiddenField(default="")

    def validate_email(self, field: EmailField) -> None:
        try:
            field.data = clean_email(field.data)
        except InvalidUserData as exc:
            raise ValidationError(exc.message) from None


class RoleForm(PortalForm):
    role = RoleField("Роль", choices=role_choices())


class ConfirmForm(PortalForm):
    """A POST-only button that says yes to going beyond the plan (CSRF and a flag)."""

    confirmed = HiddenField(default="1")
