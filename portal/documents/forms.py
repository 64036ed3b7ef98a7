"""Forms of the documents pages: requisites, the documents filter and the bank-statement upload."""

from __future__ import annotations

from flask_wtf.file import FileField, FileRequired
from wtforms import EmailField, RadioField, SelectChoice, StringField, TextAreaField

from portal.documents.requisites import KINDS, MAIL_MODES
from portal.textinput import PortalForm


class RequisitesForm(PortalForm):
    """Only the shape of the form: the rules live in portal.documents.requisites, so the checks are the same everywhere."""

    kind = RadioField(
        "Кто платит",
        choices=[SelectChoice(value, label) for value, label in KINDS.items()],
        default="org",
        validate_choice=False,
    )
    name = StringField(
        "Полное наименование",
        render_kw={"autocomplete": "organization", "placeholder": "ООО «Ромашка»"},
    )
    inn = StringField("ИНН", render_kw={"inputmode": "numeric", "autocomplete": "off"})
    kpp = StringField("КПП", render_kw={"autocomplete": "off"})
    ogrn = StringField("ОГРН или ОГРНИП", render_kw={"inputmode": "numeric", "autocomplete": "off"})
    address = TextAreaField("Юридический адрес", render_kw={"rows": 2})
    email = EmailField("Почта для документов", render_kw={"autocomplete": "email"})
    bank_name = StringField("Банк", render_kw={"placeholder": "ПАО Сбербанк, г. Москва"})
    bik = StringField("БИК", render_kw={"inputmode": "numeric", "autocomplete": "off"})
    account_number = StringField("Расчётный счёт", render_kw={"inputmode": "numeric", "autocomplete": "off"})
    correspondent_account = StringField(
        "Корреспондентский счёт", render_kw={"inputmode": "numeric", "autocomplete": "off"}
    )
    edo_id = StringField("Идентификатор в системе ЭДО", render_kw={"autocomplete": "off"})
    edo_operator = StringField("Оператор ЭДО", render_kw={"autocomplete": "off"})
    mail_mode = RadioField(
        "Закрывающие документы на почту",
        choices=[SelectChoice(value, label) for value, label in MAIL_MODES.items()],
        default="none",
        validate_choice=False,
    )


class StatementUploadForm(PortalForm):
    statement = FileField(
        "Файл выписки (1CClientBankExchange, .txt)",
        validators=[FileRequired("Выберите файл выписки, выгруженный из банка или 1С.")],
    )
