"""A customer's requisites: cleaning and checking what the accountant typed, field by field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from portal.documents.validators import (
    RequisiteError,
    normalize_digits,
    split_ip_name,
    validate_bik,
    validate_correspondent_account,
    validate_inn,
    validate_kpp,
    validate_ogrn,
    validate_ogrnip,
    validate_settlement_account,
)

KINDS = {"org": "Организация", "ip": "Индивидуальный предприниматель"}
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# ИдУчастника of the ФНС formats: the operator's three-character code (ИдОперЭДО, assigned by the ФНС) and the
# participant's code, 4 to 46 characters in all.
_EDO_ID = re.compile(r"[0-9][0-9A-Z]{2}[0-9A-Za-z@.\-]{1,43}")
# Operators whose codes are certain; for any other code the accountant names the operator (optional).
EDO_OPERATORS = {"2BM": "Контур.Диадок", "2AE": "СБИС (Тензор)"}
MAIL_MODES = {
    "none": "Не присылать: скачаю на странице «Документы»",
    "each": "Каждый документ отдельным письмом, как только он сформирован",
    "monthly": "Одно письмо в начале месяца: документы прошлого месяца и ZIP-архив",
}


@dataclass(frozen=True)
class RequisitesData:
    """Clean requisites, as kept in the database and printed on documents."""

    kind: Literal["org", "ip"]
    name: str
    inn: str
    kpp: str | None
    ogrn: str
    address: str
    email: str
    bank_name: str | None
    bik: str | None
    account_number: str | None
    correspondent_account: str | None
    edo_id: str | None
    edo_operator: str | None = None
    mail_mode: str = "none"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RequisitesInvalid(ValueError):
    """Some fields are wrong; `errors` maps each field to its message (Russian)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def _text(value: Any) -> str:
    return " ".join(str(value or "").split())


def clean_requisites(raw: Mapping[str, Any]) -> RequisitesData:
    """Normalise and check every field; collects all problems at once so each field shows its own message."""
    errors: dict[str, str] = {}
    kind = _text(raw.get("kind"))
    if kind not in KINDS:
        errors["kind"] = "Выберите: организация или индивидуальный предприниматель"
    name = _text(raw.get("name"))
    inn = normalize_digits(str(raw.get("inn") or ""))
    kpp = normalize_digits(str(raw.get("kpp") or "")).upper()
    ogrn = normalize_digits(str(raw.get("ogrn") or ""))
    address = _text(raw.get("address"))
    email = _text(raw.get("email")).lower()
    bank_name = _text(raw.get("bank_name"))
    bik = normalize_digits(str(raw.get("bik") or ""))
    account_number = normalize_digits(str(raw.get("account_number") or ""))
    corr = normalize_digits(str(raw.get("correspondent_account") or ""))
    # A participant id never contains spaces: ones pasted from a letter or a PDF (line breaks, NBSP) are dropped.
    edo_id = "".join(str(raw.get("edo_id") or "").split())
    edo_operator = _text(raw.get("edo_operator"))
    mail_mode = _text(raw.get("mail_mode")) or "none"

    def check(field: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except RequisiteError as exc:
            errors.setdefault(field, exc.message)

    if not name:
        errors["name"] = (
            "Укажите полное наименование, например ООО «Ромашка»"
            if kind != "ip"
            else "Укажите ФИО предпринимателя, например ИП Соколов Сергей Викторович"
        )
    elif len(name) > 300:
        errors["name"] = "Не длиннее 300 символов"
    elif kind == "ip":
        # The УПД needs the ФИО in parts; a name it cannot split left the document pending for ever (issue #14).
        check("name", split_ip_name, name)

    if kind == "org":
        check("inn", validate_inn, inn, "org")
        check("kpp", validate_kpp, kpp)
        check("ogrn", validate_ogrn, ogrn)
    elif kind == "ip":
        check("inn", validate_inn, inn, "ip")
        if kpp:
            errors["kpp"] = "У индивидуального предпринимателя нет КПП — оставьте поле пустым"
        check("ogrn", validate_ogrnip, ogrn)
    if not address:
        errors["address"] = "Укажите юридический адрес с индексом, например 123112, г. Москва, ул. Тверская, д. 1"
    elif len(address) > 500:
        errors["address"] = "Не длиннее 500 символов"
    if not email:
        errors["email"] = "Укажите почту, на которую отправлять документы"
    elif not _EMAIL.fullmatch(email) or len(email) > 254:
        errors["email"] = "Проверьте адрес почты: например, buh@example.ru"

    # Bank details are optional, but half of them is no use on a document: all three or none.
    if bik or account_number or corr or bank_name:
        if not bank_name:
            errors["bank_name"] = "Укажите наименование банка"
        elif len(bank_name) > 300:
            errors["bank_name"] = "Не длиннее 300 символов"
        check("bik", validate_bik, bik)
        if "bik" in errors:
            if not account_number:
                errors["account_number"] = "Укажите расчётный счёт"
            if not corr:
                errors["correspondent_account"] = "Укажите корреспондентский счёт"
        else:
            check("account_number", validate_settlement_account, account_number, bik, corr)
            check("correspondent_account", validate_correspondent_account, corr, bik)

    if edo_id and not _EDO_ID.fullmatch(edo_id):
        errors["edo_id"] = (
            "Идентификатор ЭДО состоит из латинских букв, цифр и дефисов (от 4 до 46 знаков) и начинается с кода "
            "оператора, например 2BM-7701234567-770101001-…"
        )
    elif edo_id:
        known = EDO_OPERATORS.get(edo_id[:3])
        if known and edo_operator and edo_operator.casefold() != known.casefold():
            errors["edo_operator"] = (
                f"Идентификатор {edo_id[:3]}… выдаёт оператор {known}: проверьте идентификатор или оператора"
            )
        edo_operator = edo_operator or known or ""
    elif edo_operator:
        errors["edo_id"] = "Укажите идентификатор участника ЭДО: без него документы оператору не отправить"
    if len(edo_operator) > 100:
        errors["edo_operator"] = "Не длиннее 100 символов"
    if mail_mode not in MAIL_MODES:
        errors["mail_mode"] = "Выберите, как присылать закрывающие документы"

    if errors:
        raise RequisitesInvalid(errors)
    return RequisitesData(
        kind=kind,  # type: ignore[arg-type]
        name=name,
        inn=inn,
        kpp=kpp if kind == "org" else None,
        ogrn=ogrn,
        address=address,
        email=email,
        bank_name=bank_name or None,
        bik=bik or None,
        account_number=account_number or None,
        correspondent_account=corr or None,
        edo_id=edo_id or None,
        edo_operator=edo_operator or None,
        mail_mode=mail_mode,
    )
