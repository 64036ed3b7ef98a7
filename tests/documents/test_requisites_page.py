"""The requisites page: an accountant enters the company's requisites; each wrong field says what is wrong with it."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from portal import create_app
from portal.audit import AuditLog
from portal.config import DEFAULTS, ConfigError
from portal.documents.models import Requisites
from portal.documents.requisites import RequisitesInvalid, clean_requisites
from portal.documents.startup import check
from tests.conftest import post
from tests.documents.factories import IP, ORG

OWNER = "+79161110001"
ACCOUNTANT = "+79161110002"


def field_error(html: str, field: str) -> str | None:
    """The error shown next to one field (inside that field's own block), as a person reads it."""
    block = re.search(
        rf'<div class="field[^"]*">(?:(?!<div class="field).)*?id="{field}"(?:(?!<div class="field).)*?</div>',
        html,
        re.S,
    )
    assert block, f"no field {field} on the page"
    error = re.search(r'<p class="error" id="[^"]+">([^<]+)</p>', block.group(0))
    return error.group(1).replace("&#34;", '"').replace("&#39;", "'") if error else None


@pytest.fixture
def company(make_account):
    return make_account(name="ООО «Ромашка»", owner_phone=OWNER, accountant_phone=ACCOUNTANT, members=1)


def test_accountant_saves_organisation_requisites_and_sees_them_again(client, auth, db, company):
    auth.login(ACCOUNTANT)
    page = client.get("/requisites")
    assert page.status_code == 200
    assert "Реквизиты компании" in page.get_data(as_text=True)

    # People paste numbers with spaces; they are kept as digits only.
    resp = post(client, "/requisites", {**ORG, "inn": "7728 146 350", "account_number": "4070 2810 8000 0001 2345"})
    assert resp.status_code == 302
    row = db.scalars(sa.select(Requisites).where(Requisites.account_id == company.id)).one()
    assert (row.kind, row.name, row.inn, row.kpp, row.ogrn) == (
        "org",
        "ООО «Ромашка»",
        "7728146350",
        "772801001",
        ORG["ogrn"],
    )
    assert row.account_number == "40702810800000012345"
    assert row.edo_id is None

    html = client.get("/requisites").get_data(as_text=True)
    assert 'value="7728146350"' in html
    assert "Реквизиты сохранены" in html


def test_sole_proprietor_without_bank_details_and_without_kpp(client, auth, db, company):
    auth.login(OWNER)
    resp = post(client, "/requisites", IP)
    assert resp.status_code == 302
    row = db.scalars(sa.select(Requisites).where(Requisites.account_id == company.id)).one()
    assert (row.kind, row.inn, row.kpp, row.ogrn, row.bik) == ("ip", "500301234503", None, "318508100000123", None)


def test_each_wrong_field_gets_its_own_message_and_nothing_is_saved(client, auth, db, company):
    auth.login(ACCOUNTANT)
    bad = {
        **ORG,
        "inn": "7728146351",  # wrong check digit
        "kpp": "77280100",  # 8 characters
        "ogrn": "1027739000124",  # wrong check digit
        "address": "",
        "email": "buh@",
        "account_number": "40702810800000012346",  # key does not match the БИК
        "correspondent_account": "30101810200000000594",
    }
    resp = post(client, "/requisites", bad)
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert field_error(html, "inn") == "Неверное контрольное число ИНН"
    assert field_error(html, "kpp") == "КПП должен состоять из 9 символов"
    assert field_error(html, "ogrn") == "Неверное контрольное число ОГРН"
    assert field_error(html, "address").startswith("Укажите юридический адрес")
    assert field_error(html, "email").startswith("Проверьте адрес почты")
    assert field_error(html, "account_number") == "Неверный расчётный счёт: контрольный ключ не сходится с БИК банка"
    assert field_error(html, "correspondent_account") == (
        "Неверный корреспондентский счёт: контрольный ключ не сходится с БИК банка"
    )
    assert field_error(html, "name") is None
    assert field_error(html, "bik") is None
    # What the person typed stays in the form, so they fix it instead of retyping.
    assert 'value="7728146351"' in html
    assert db.scalar(sa.select(sa.func.count()).select_from(Requisites)) == 0


@pytest.mark.parametrize(
    "changes, field, message",
    [
        ({"inn": "7728146350"}, "inn", "ИНН ИП должен состоять из 12 цифр (10 цифр — у ИНН организации)"),
        ({"kpp": "772801001"}, "kpp", "У индивидуального предпринимателя нет КПП — оставьте поле пустым"),
        ({"ogrn": "1027739000123"}, "ogrn", "ОГРНИП должен состоять из 15 цифр"),
        ({"ogrn": "318508100000124"}, "ogrn", "Неверное контрольное число ОГРНИП"),
        ({"name": ""}, "name", "Укажите ФИО предпринимателя, например ИП Соколов Сергей Викторович"),
    ],
)
def test_sole_proprietor_rules(client, auth, company, changes, field, message):
    auth.login(OWNER)
    resp = post(client, "/requisites", {**IP, **changes})
    assert resp.status_code == 400
    assert field_error(resp.get_data(as_text=True), field) == message


@pytest.mark.parametrize(
    "changes, field, message",
    [
        ({"inn": "500301234503"}, "inn", "ИНН организации должен состоять из 10 цифр (12 цифр — у ИНН ИП)"),
        ({"kpp": ""}, "kpp", "Укажите КПП"),
        ({"kpp": "7728ab001"}, "kpp", None),  # lower-case letters are upper-cased, then valid
        (
            {"kpp": "7728АБ001"},
            "kpp",
            "Неверный формат КПП: 9 цифр, 5-й и 6-й символы могут быть заглавными латинскими буквами",
        ),
        ({"ogrn": "318508100000123"}, "ogrn", "ОГРН должен состоять из 13 цифр"),
        ({"bik": "04452559"}, "bik", "БИК должен состоять из 9 цифр"),
        ({"bank_name": ""}, "bank_name", "Укажите наименование банка"),
        (
            {"correspondent_account": "40702810800000012345"},
            "correspondent_account",
            # An ЕКС (40102…) is a correspondent account too since 2021, so the message names both kinds.
            "Корреспондентский счёт должен начинаться с 301 (счёт банка в Банке России) "
            "или с 40102 (единый казначейский счёт)",
        ),
        ({"edo_id": "ЭДО 1"}, "edo_id", None),
        ({"kind": "llc"}, "kind", "Выберите: организация или индивидуальный предприниматель"),
    ],
)
def test_organisation_rules(client, auth, company, changes, field, message):
    auth.login(OWNER)
    resp = post(client, "/requisites", {**ORG, **changes})
    html = resp.get_data(as_text=True)
    if message is None and field == "kpp":
        assert resp.status_code == 302
        return
    assert resp.status_code == 400
    if field == "edo_id":
        assert field_error(html, "edo_id").startswith("Идентификатор ЭДО состоит из латинских букв")
    elif field == "kind":
        assert message in html
    else:
        assert field_error(html, field) == message


def test_bank_details_are_all_or_nothing():
    with pytest.raises(RequisitesInvalid) as exc:
        clean_requisites({**ORG, "account_number": "", "correspondent_account": ""})
    assert exc.value.errors == {
        "account_number": "Укажите Расчётный счёт",
        "correspondent_account": "Укажите Корреспондентский счёт",
    }
    no_bank = clean_requisites({**ORG, "bank_name": "", "bik": "", "account_number": "", "correspondent_account": ""})
    assert (no_bank.bank_name, no_bank.bik, no_bank.account_number) == (None, None, None)


def test_change_is_audited_before_and_after(client, auth, db, company):
    auth.login(ACCOUNTANT)
    post(client, "/requisites", ORG)
    post(client, "/requisites", {**ORG, "address": "119019, г. Москва, ул. Новый Арбат, д. 1"})
    post(client, "/requisites", {**ORG, "address": "119019, г. Москва, ул. Новый Арбат, д. 1"})  # no change
    records = db.scalars(
        sa.select(AuditLog).where(AuditLog.action == "documents.requisites_saved").order_by(AuditLog.id)
    ).all()
    assert len(records) == 2
    assert records[0].before is None and records[0].after["inn"] == ORG["inn"]
    assert records[1].before == {"address": ORG["address"]}
    assert records[1].after == {"address": "119019, г. Москва, ул. Новый Арбат, д. 1"}
    assert records[1].account_id == company.id
    assert records[1].actor_label.endswith(f"({ACCOUNTANT})")


def test_audited_fields_keep_the_form_order(client, auth, db, company):
    """The audit entry lists the changed fields in the form's order, the same in every process (it was a set)."""
    auth.login(ACCOUNTANT)
    post(client, "/requisites", ORG)
    changed = {
        **ORG,
        "address": "119019, г. Москва, ул. Новый Арбат, д. 1",
        "bank_name": "АО «Банк»",
        "kpp": "771001001",
    }
    post(client, "/requisites", changed)
    record = db.scalars(
        sa.select(AuditLog).where(AuditLog.action == "documents.requisites_saved").order_by(AuditLog.id.desc())
    ).first()
    form_order = [f for f in Requisites.FIELDS if f in record.after]
    assert list(record.after) == form_order and list(record.before) == form_order
    assert len(form_order) >= 2
    first = db.scalars(
        sa.select(AuditLog).where(AuditLog.action == "documents.requisites_saved").order_by(AuditLog.id)
    ).first()
    assert list(first.after) == [f for f in Requisites.FIELDS if f in first.after]


def test_members_may_not_see_or_change_requisites(client, auth, company):
    auth.login("+79160010001")  # the member of the first factory account
    assert client.get("/requisites").status_code == 403
    nav = client.get("/", follow_redirects=True).get_data(as_text=True)
    assert "Реквизиты" not in nav


def test_owner_sees_requisites_in_the_navigation(client, auth, company):
    auth.login(OWNER)
    html = client.get("/documents").get_data(as_text=True)
    assert ">Реквизиты</a>" in html and ">Документы</a>" in html
    assert html.index(">Реквизиты</a>") < html.index(">Документы</a>")


def test_after_saving_the_payer_goes_back_where_they_came_from_but_only_on_this_site(client, auth, company):
    auth.login(OWNER)
    resp = post(client, "/requisites?next=/checkout%3Fplan%3Dusers-12%26months%3D9", ORG)
    assert resp.headers["Location"] == "/checkout?plan=users-12&months=9"
    resp = post(client, "/requisites?next=https://evil.example/", ORG)
    assert resp.headers["Location"] == "/requisites"


def test_start_up_names_every_bad_seller_setting():
    config = {
        **DEFAULTS,
        "SELLER_INN": "7712345672",
        "SELLER_KPP": "77120100",
        "SELLER_ACCOUNT": "40702810303800012346",
        "SELLER_DIRECTOR": "Иванов",
        "VAT_RATE": "19",
    }
    with pytest.raises(ConfigError) as exc:
        check(config)
    text = str(exc.value)
    assert "SELLER_INN: Неверное контрольное число ИНН (значение «7712345672»)" in text
    assert "SELLER_KPP: КПП должен состоять из 9 символов" in text
    assert "SELLER_ACCOUNT: Неверный расчётный счёт: контрольный ключ не сходится с БИК банка" in text
    assert "SELLER_DIRECTOR: нужны фамилия и инициалы" in text
    assert "VAT_RATE: ставка НДС «19» не поддерживается" in text
    assert "SELLER_BIK" not in text and "SELLER_OGRN" not in text


def test_default_seller_and_a_vat_rate_start(tmp_path):
    app = create_app(
        {
            "INSTANCE_PATH": str(tmp_path),
            "SECRET_KEY": "x",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
            "VAT_RATE": "22",
        }
    )
    assert app.config["VAT_RATE"] == "22"
    app.extensions["portal.db"].engine.dispose()


def test_a_budget_customer_enters_a_treasury_account_with_the_single_treasury_account(client, auth, company, db):
    # A Moscow city institution's bank details as the Treasury prints them since 2021 (issue #21).
    auth.login(OWNER)
    budget = {
        **ORG,
        "bank_name": "ГУ Банка России по ЦФО//УФК по г. Москве г. Москва",
        "bik": "004525988",
        "account_number": "0322 4643 4500 0000 7300",
        "correspondent_account": "40102810545370000003",
    }
    resp = post(client, "/requisites", budget)
    assert resp.status_code == 302, field_error(resp.get_data(as_text=True), "account_number")
    row = db.scalars(sa.select(Requisites)).one()
    assert (row.bik, row.account_number, row.correspondent_account) == (
        "004525988",
        "03224643450000007300",
        "40102810545370000003",
    )


def test_a_customer_of_a_bank_of_russia_unit_has_no_correspondent_account(client, auth, company, db):
    auth.login(OWNER)
    resp = post(
        client,
        "/requisites",
        {
            **ORG,
            "bank_name": "ГУ Банка России по ЦФО",
            "bik": "044525000",
            "account_number": "40101810045250010041",
            "correspondent_account": "",
        },
    )
    assert resp.status_code == 302
    row = db.scalars(sa.select(Requisites)).one()
    assert (row.account_number, row.correspondent_account) == ("40101810045250010041", None)


@pytest.mark.parametrize(
    ("kind", "ogrn", "message"),
    [
        ("org", "3027700132193", "ОГРН организации начинается с 1 или 5, а этот номер — с 3"),
        ("ip", "404500000000017", "ОГРНИП начинается с 3, а этот номер — с 4"),
    ],
)
def test_a_registration_number_of_the_wrong_kind_is_refused(client, auth, company, kind, ogrn, message):
    auth.login(OWNER)
    resp = post(client, "/requisites", {**(ORG if kind == "org" else IP), "ogrn": ogrn})
    assert resp.status_code == 400
    assert field_error(resp.get_data(as_text=True), "ogrn").startswith(message)


@pytest.mark.parametrize(
    ("base", "changes", "field", "message"),
    [
        (ORG, {"inn": "0000000000"}, "inn", "ИНН не может состоять из одних нулей"),
        (ORG, {"kpp": "000 000 000"}, "kpp", "КПП не может состоять из одних нулей"),
        (IP, {"inn": "0000 0000 0000"}, "inn", "ИНН не может состоять из одних нулей"),
    ],
)
def test_all_zero_inn_or_kpp_is_refused_at_the_field(client, auth, db, company, base, changes, field, message):
    # Issue #14: zeros pass the check digits and the pattern, then the FNS schema refuses the УПД.
    auth.login(OWNER)
    resp = post(client, "/requisites", {**base, **changes})
    assert resp.status_code == 400
    assert field_error(resp.get_data(as_text=True), field) == message
    assert db.scalar(sa.select(sa.func.count()).select_from(Requisites)) == 0


@pytest.mark.parametrize(
    "name",
    [
        "ИП Соколов",
        "Соколов",
        "Индивидуальный предприниматель Соколов",
        "ИП",
        "Индивидуальный предприниматель",
        "ИП С. В.",
    ],
)
def test_sole_proprietor_needs_a_full_name(client, auth, db, company, name):
    # Issue #14: without a first name the УПД's СвИП/ФИО cannot be written, and the УПД stayed pending for ever.
    auth.login(OWNER)
    resp = post(client, "/requisites", {**IP, "name": name})
    assert resp.status_code == 400
    assert field_error(resp.get_data(as_text=True), "name") == "Укажите ФИО полностью: ИП Соколов Сергей Викторович"
    assert db.scalar(sa.select(sa.func.count()).select_from(Requisites)) == 0


@pytest.mark.parametrize(
    "name", ["ИП Соколов Сергей Викторович", "Индивидуальный предприниматель Соколов Сергей", "Соколов Сергей"]
)
def test_sole_proprietor_with_a_full_name_is_accepted(name):
    assert clean_requisites({**IP, "name": name}).name == name


def test_an_organisation_name_of_one_word_is_still_accepted():
    # The full-name rule is the sole proprietor's: an organisation's name is not a ФИО.
    assert clean_requisites({**ORG, "name": "Ромашка"}).name == "Ромашка"


IP_SELLER = {
    "SELLER_NAME": "ИП Кузнецов Алексей Викторович",
    "SELLER_INN": "771234567859",
    "SELLER_KPP": "",
    "SELLER_OGRN": "318508100000123",
    "SELLER_ACCOUNT": "40802810438000054321",
    "SELLER_DIRECTOR": "Кузнецов А. В.",
    "SELLER_ACCOUNTANT": "Кузнецов А. В.",
    "SELLER_EDO_ID": "2BM-771234567859-000000000000000000001",
}


def test_start_up_accepts_a_sole_proprietor_seller():
    # Issue #14: a vendor that is an ИП has a 12-digit ИНН, an ОГРНИП and no КПП.
    check({**DEFAULTS, **IP_SELLER})


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"SELLER_NAME": "ИП Кузнецов"}, "SELLER_NAME: Укажите ФИО полностью: ИП Соколов Сергей Викторович"),
        ({"SELLER_OGRN": "1027700123450"}, "SELLER_OGRN: ОГРНИП должен состоять из 15 цифр"),
        ({"SELLER_INN": "000000000000"}, "SELLER_INN: ИНН не может состоять из одних нулей"),
    ],
)
def test_start_up_names_a_bad_sole_proprietor_seller(changes, problem):
    with pytest.raises(ConfigError) as exc:
        check({**DEFAULTS, **IP_SELLER, **changes})
    assert problem in str(exc.value)
