"""Forms take what people paste: no field of any form carries a browser-side length cut (maxlength cut a spaced
ИНН at 14 characters, an SMS code «694 419» to «694 41» and long names mid-word, without a word); the server
normalises identifiers (spaces, NBSP, dashes) and refuses what is too long at the field, naming the limit."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest
import sqlalchemy as sa

import portal
from portal.documents.models import Requisites
from portal.textinput import PortalForm
from tests.conftest import post
from tests.documents.factories import IP, ORG


def _all_forms() -> list[type[PortalForm]]:
    for module in pkgutil.walk_packages(portal.__path__, "portal."):
        if module.name.endswith(("forms", "views")) and ".migrations" not in module.name:
            importlib.import_module(module.name)
    found, todo = [], list(PortalForm.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return [c for c in found if c.__module__.startswith("portal.")]


def test_no_form_field_renders_a_length_cut(app):
    forms = _all_forms()
    assert len(forms) > 10  # every feature's forms were found
    with app.test_request_context("/"):
        for cls in forms:
            form = cls(meta={"csrf": False})
            for field in form:
                html = str(field())
                assert "maxlength" not in html and "minlength" not in html, (cls.__name__, field.name, html)


def test_pages_with_forms_have_no_maxlength(client, auth, make_account):
    make_account(owner_phone="+79164440001", accountant_phone="+79164440002")
    assert "maxlength" not in client.get("/login").get_data(as_text=True)
    auth.login("+79164440001")
    for path in ("/team", "/profile"):
        assert "maxlength" not in client.get(path).get_data(as_text=True), path
    auth.logout()
    auth.login("+79164440002")
    assert "maxlength" not in client.get("/requisites").get_data(as_text=True)


@pytest.mark.parametrize(
    "base, field, typed",
    [
        (IP, "inn", "500\u00a0301\u00a0234\u00a0503"),
        (IP, "inn", "500 301 234 503"),
        (IP, "inn", "500-301-234-503"),
        (IP, "ogrn", "318 508 100 000 123"),
        (ORG, "account_number", "40702-810-8-0000-0012345"),
        (ORG, "bik", "04 45 25 593"),
    ],
)
def test_spaced_identifiers_are_accepted_and_kept_as_digits(client, auth, db, make_account, base, field, typed):
    account = make_account(owner_phone="+79164440011", accountant_phone="+79164440012")
    auth.login("+79164440012")
    resp = post(client, "/requisites", {**base, field: typed})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    row = db.scalars(sa.select(Requisites).where(Requisites.account_id == account.id)).one()
    assert getattr(row, field) == re.sub(r"\D", "", typed) == base[field]


def test_a_long_company_name_is_refused_at_the_field_with_the_limit(client, auth, db, make_account):
    account = make_account(owner_phone="+79164440021", accountant_phone="+79164440022")
    auth.login("+79164440022")
    long_name = "ООО «" + "Очень длинное наименование " * 12 + "»"
    assert len(long_name) > 300
    resp = post(client, "/requisites", {**ORG, "name": long_name})
    assert resp.status_code == 400
    assert "Не длиннее 300 символов" in resp.get_data(as_text=True)
    assert db.scalars(sa.select(Requisites).where(Requisites.account_id == account.id)).first() is None
