"""The seller (the vendor) as printed on invoices and УПД: requisites and VAT setting from configuration."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from portal.documents import validators
from portal.documents.validators import RequisiteError

# подп. 26 п. 2 ст. 149 НК РФ: a licence to software listed in the Russian software registry is VAT-exempt.
VAT_EXEMPT_BASIS = "НДС не облагается на основании подп. 26 п. 2 ст. 149 НК РФ"
# Rates the УПД format 5.03 accepts for an ordinary sale.
ALLOWED_VAT_RATES = (0, 5, 7, 10, 18, 20, 22)
_EDO_ID = re.compile(r"[0-9A-Za-z]{3}[0-9A-Za-z-]{1,97}")
_INITIALS_NAME = re.compile(r"\S+\s+\S")


@dataclass(frozen=True)
class Seller:
    name: str
    inn: str
    kpp: str
    ogrn: str
    address: str
    bank_name: str
    bik: str
    corr_account: str
    account: str
    director: str
    accountant: str
    edo_id: str
    vat_rate: int | None  # None: exempt

    @property
    def vat_exempt(self) -> bool:
        return self.vat_rate is None

    def as_dict(self) -> dict[str, Any]:
        """The plain dict the document templates take."""
        data = asdict(self)
        data.pop("vat_rate")
        data.pop("edo_id")
        return data

    @property
    def composer(self) -> str:
        """«ООО «…», ИНН/КПП …/…» — who drew up the document (УПД line [14])."""
        if self.kpp:
            return f"{self.name}, ИНН/КПП {self.inn}/{self.kpp}"
        return f"{self.name}, ИНН {self.inn}"


def parse_vat_rate(raw: Any) -> int | None:
    """VAT_RATE: empty → exempt (None); otherwise a whole percent the УПД format knows."""
    text = "" if raw is None else str(raw).strip().rstrip("%").strip()
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or int(text) not in ALLOWED_VAT_RATES:
        allowed = ", ".join(str(r) for r in ALLOWED_VAT_RATES)
        raise ValueError(
            f"VAT_RATE: ставка НДС «{raw}» не поддерживается; оставьте пустой (без НДС) или одну из: {allowed}"
        )
    return int(text)


def seller_problems(config: Mapping[str, Any]) -> list[str]:
    """Every bad seller setting, each named with what is wrong; an empty list means the seller is usable."""
    problems: list[str] = []

    def text(key: str) -> str:
        return " ".join(str(config.get(key) or "").split())

    for key, label in (
        ("SELLER_NAME", "наименование продавца"),
        ("SELLER_ADDRESS", "юридический адрес продавца"),
        ("SELLER_BANK_NAME", "наименование банка продавца"),
        ("SELLER_DIRECTOR", "руководителя (подписанта) в виде «Фамилия И. О.»"),
        ("SELLER_ACCOUNTANT", "главного бухгалтера в виде «Фамилия И. О.»"),
    ):
        if not text(key):
            problems.append(f"{key}: укажите {label}")
    for key in ("SELLER_DIRECTOR", "SELLER_ACCOUNTANT"):
        if text(key) and not _INITIALS_NAME.match(text(key)):
            problems.append(f"{key}: нужны фамилия и инициалы, например «Иванов И. И.», а не «{text(key)}»")

    inn = text("SELLER_INN")
    kind = "ip" if len(inn) == 12 else "org"
    checks: list[tuple[str, Any]] = [
        ("SELLER_INN", lambda: validators.validate_inn(inn, kind)),
        ("SELLER_BIK", lambda: validators.validate_bik(text("SELLER_BIK"))),
    ]
    if kind == "org":
        checks.append(("SELLER_KPP", lambda: validators.validate_kpp(text("SELLER_KPP"))))
        checks.append(("SELLER_OGRN", lambda: validators.validate_ogrn(text("SELLER_OGRN"))))
    else:
        checks.append(("SELLER_OGRN", lambda: validators.validate_ogrnip(text("SELLER_OGRN"))))
        # The УПД writes a sole-proprietor seller as СвИП with the ФИО in parts, and the ИП signs it: the name
        # must split, or every УПД would stay pending. An empty name is already reported above.
        if text("SELLER_NAME"):
            checks.append(("SELLER_NAME", lambda: validators.split_ip_name(text("SELLER_NAME"))))
    checks.append(
        ("SELLER_ACCOUNT", lambda: validators.validate_settlement_account(text("SELLER_ACCOUNT"), text("SELLER_BIK")))
    )
    checks.append(
        (
            "SELLER_CORR_ACCOUNT",
            lambda: validators.validate_correspondent_account(text("SELLER_CORR_ACCOUNT"), text("SELLER_BIK")),
        )
    )
    for key, check in checks:
        try:
            check()
        except RequisiteError as exc:
            # A bad БИК would be reported again by both account checks; name it once, at SELLER_BIK.
            if key in ("SELLER_ACCOUNT", "SELLER_CORR_ACCOUNT") and exc.field == "bik":
                continue
            problems.append(f"{key}: {exc.message} (значение «{text(key)}»)")

    edo_id = text("SELLER_EDO_ID")
    if not edo_id or not _EDO_ID.fullmatch(edo_id):
        problems.append(
            f"SELLER_EDO_ID: идентификатор участника ЭДО «{edo_id}» имеет неверный вид "
            "(латинские буквы, цифры и дефисы, от 4 символов)"
        )
    try:
        parse_vat_rate(config.get("VAT_RATE"))
    except ValueError as exc:
        problems.append(str(exc))
    days = config.get("INVOICE_VALID_BANKING_DAYS")
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 60:
        problems.append(f"INVOICE_VALID_BANKING_DAYS: нужно целое число банковских дней от 1 до 60, а не «{days}»")
    return problems


def get_seller(config: Mapping[str, Any]) -> Seller:
    """The seller from the app's configuration (already checked at start-up)."""

    def text(key: str) -> str:
        return " ".join(str(config.get(key) or "").split())

    return Seller(
        name=text("SELLER_NAME"),
        inn=text("SELLER_INN"),
        kpp=text("SELLER_KPP") if len(text("SELLER_INN")) == 10 else "",
        ogrn=text("SELLER_OGRN"),
        address=text("SELLER_ADDRESS"),
        bank_name=text("SELLER_BANK_NAME"),
        bik=text("SELLER_BIK"),
        corr_account=text("SELLER_CORR_ACCOUNT"),
        account=text("SELLER_ACCOUNT"),
        director=text("SELLER_DIRECTOR"),
        accountant=text("SELLER_ACCOUNTANT"),
        edo_id=text("SELLER_EDO_ID"),
        vat_rate=parse_vat_rate(config.get("VAT_RATE")),
    )
