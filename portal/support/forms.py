"""Forms of the support console and of the owners' requests; numbers are parsed exactly by portal.support.amounts."""

from __future__ import annotations

from typing import Any

from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

from portal.support.amounts import (
    STORAGE_UNIT_TITLES,
    AmountError,
    parse_rubles,
    parse_seats,
    parse_storage,
    parse_users_expected,
)
from portal.textinput import PortalForm

REASON_HINT = "Попадёт в журнал действий вместе с тем, кто и когда это сделал."


class RuDateField(DateField):
    """A date from the browser's date input (ГГГГ-ММ-ДД) or typed by hand (ДД.ММ.ГГГГ), with a Russian error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("format", ["%Y-%m-%d", "%d.%m.%Y"])
        super().__init__(*args, **kwargs)

    def process_formdata(self, valuelist: list[Any]) -> None:
        try:
            super().process_formdata(valuelist)
        except ValueError:
            self.data = None
            raise ValueError("Дата в формате ДД.ММ.ГГГГ, например 25.11.2026.") from None


def _required_text(label: str, missing: str, **render_kw: Any) -> TextAreaField:
    """A text staff must write (up to 1000 characters); `missing` says what it is for when left empty."""
    return TextAreaField(
        label,
        validators=[DataRequired(missing), Length(max=1000, message="Не длиннее 1000 символов.")],
        render_kw=render_kw,
    )


def _confirm(label: str) -> BooleanField:
    return BooleanField(label, validators=[InputRequired("Поставьте галочку, чтобы подтвердить действие.")])


class ConfirmedActionForm(PortalForm):
    """Every staff action: a reason for the audit log and an explicit tick, so nothing happens by a stray click."""

    reason = _required_text("Причина", "Укажите причину: она попадёт в журнал действий.", rows=2)
    confirm = _confirm("Подтверждаю действие")


class TrialForm(ConfirmedActionForm):
    plan_code = RadioField(
        "Тариф на пробный месяц", validators=[InputRequired("Выберите тариф.")], validate_choice=False
    )
    request_id = HiddenField()
    confirm = _confirm("Да, включить пробный месяц: второй раз для этой компании его включить будет нельзя")


class CustomPlanForm(ConfirmedActionForm):
    seats = StringField(
        "Пользователей, до",
        render_kw={"inputmode": "numeric", "placeholder": "1500", "autocomplete": "off"},
    )
    storage = StringField("Хранилище", render_kw={"inputmode": "numeric", "placeholder": "3", "autocomplete": "off"})
    storage_unit = SelectField(
        "Единица", choices=[SelectChoice(k, v) for k, v in STORAGE_UNIT_TITLES.items()], default="TB"
    )
    monthly_price = StringField(
        "Цена в месяц, ₽",
        render_kw={"inputmode": "decimal", "placeholder": "29 990,00", "autocomplete": "off"},
    )
    request_id = HiddenField()
    confirm = _confirm("Да, создать тариф: он сразу появится у владельца на странице «Тарифы»")

    # Parsed values, set by the validators below (kopecks and bytes as int).
    seats_value: int
    storage_bytes: int
    price_kopecks: int

    def validate_seats(self, field: StringField) -> None:
        try:
            self.seats_value = parse_seats(field.data)
        except AmountError as exc:
            raise ValidationError(str(exc)) from None

    def validate_storage(self, field: StringField) -> None:
        try:
            self.storage_bytes = parse_storage(field.data, self.storage_unit.data or "")
        except AmountError as exc:
            raise ValidationError(str(exc)) from None

    def validate_monthly_price(self, field: StringField) -> None:
        try:
            self.price_kopecks = parse_rubles(field.data)
        except AmountError as exc:
            raise ValidationError(str(exc)) from None


class InvoicePayForm(ConfirmedActionForm):
    bank_reference = StringField(
        "Платёжный документ",
        validators=[
            DataRequired("Укажите платёжный документ, например «п/п № 512 от 25.11.2026»."),
            Length(max=200, message="Не длиннее 200 символов."),
        ],
        render_kw={"placeholder": "п/п № 512 от 25.11.2026", "autocomplete": "off"},
    )
    paid_on = RuDateField("Дата поступления на счёт", validators=[InputRequired("Укажите дату поступления денег.")])
    confirm = _confirm("Да, деньги поступили: подключить тариф и сформировать УПД")


class RightsRefundForm(ConfirmedActionForm):
    """Staff end a paid order's rights early and return the unused days' money (a УКД follows where a УПД was)."""

    cut_on = RuDateField("Права заканчиваются с", validators=[InputRequired("Укажите день, с которого прав уже нет.")])
    amount = StringField(
        "Сумма возврата, ₽",
        validators=[DataRequired("Укажите сумму возврата в рублях, например «7 379,31».")],
        render_kw={"inputmode": "decimal", "autocomplete": "off"},
    )
    confirm = _confirm("Да, прекратить права с этого дня и вернуть деньги тем же способом, каким они пришли")


class InvoiceCancelForm(ConfirmedActionForm):
    confirm = _confirm("Да, отменить счёт: оплатить его будет нельзя, номер не используется повторно")


class ResendForm(ConfirmedActionForm):
    confirm = _confirm("Да, отправить письмо")


class StatementForm(PortalForm):
    statement = FileField(
        "Файл выписки (1CClientBankExchange, .txt)",
        validators=[FileRequired("Выберите файл выписки, выгруженный из банка или 1С.")],
    )


class LinkForm(ConfirmedActionForm):
    invoice_id = RadioField("Счёт", coerce=str, validate_choice=False)
    invoice_number = StringField(
        "или номер счёта",
        render_kw={"placeholder": "2026-000123", "autocomplete": "off"},
        validators=[Optional()],
    )
    confirm_amount = BooleanField("Сумма отличается — всё равно привязать и считать счёт оплаченным")
    confirm = _confirm("Да, привязать платёж: счёт будет оплачен, тариф подключён, УПД сформирован")

    def validate(self, extra_validators: Any = None) -> bool:
        ok = super().validate(extra_validators)
        if not (self.invoice_id.data or "").strip() and not (self.invoice_number.data or "").strip():
            self.invoice_id.errors = [*self.invoice_id.errors, "Выберите счёт или введите его номер."]
            ok = False
        return ok


class DismissForm(ConfirmedActionForm):
    reason = _required_text(
        "Почему платёж не наш",
        "Укажите, почему платёж не относится к счёту.",
        rows=2,
        placeholder="Ошибочный платёж, вернуть плательщику",
    )
    confirm = _confirm("Да, платёж не относится к нашим счетам")


class ResolveForm(PortalForm):
    """Closing a request: the note is what the owner reads on their dashboard."""

    note = _required_text("Ответ владельцу", "Напишите ответ: владелец увидит его на главной странице.", rows=3)


class RequestForm(PortalForm):
    """The owner's request to support."""

    plan_code = RadioField("Какой тариф попробовать", validate_choice=False)
    users_expected = StringField(
        "Сколько будет пользователей",
        render_kw={"inputmode": "numeric", "placeholder": "1500", "autocomplete": "off"},
    )
    comment = TextAreaField(
        "Комментарий",
        validators=[Length(max=2000, message="Не длиннее 2000 символов.")],
        render_kw={"rows": 4},
    )

    kind = "large_plan"  # set by the view before validating: which fields the request needs
    users_value: int | None = None

    def validate_users_expected(self, field: StringField) -> None:
        if self.kind != "large_plan":
            return
        try:
            self.users_value = parse_users_expected(field.data)
        except AmountError as exc:
            raise ValidationError(str(exc)) from None

    def validate_plan_code(self, field: RadioField) -> None:
        if self.kind == "trial" and not field.data:
            raise ValidationError("Выберите тариф, который хотите попробовать.")


class CreditForm(ConfirmedActionForm):
    """An unmatched bank payment credited to a company's balance."""

    account_id = StringField(
        "№ аккаунта компании",
        filters=[lambda v: v.strip() if isinstance(v, str) else v],
        validators=[DataRequired("Укажите номер аккаунта компании.")],
        render_kw={"inputmode": "numeric", "autocomplete": "off"},
    )
    confirm = _confirm("Да, это деньги этой компании: зачислить на её баланс")


class RefundDoneForm(ConfirmedActionForm):
    """A bank refund the seller's accountant has sent."""

    reference = StringField(
        "Платёжное поручение возврата",
        filters=[lambda v: " ".join(v.split()) if isinstance(v, str) else v],
        validators=[DataRequired("Укажите платёжное поручение, например «п/п № 301 от 02.12.2026»."), Length(max=200)],
    )


class RefundStartForm(ConfirmedActionForm):
    """Staff return a company's balance (all of it) on its behalf."""
