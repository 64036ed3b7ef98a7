"""Fixtures of the task queue's tests: staff with a signed-in client, a company with an invoice to pay."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from portal.accounts.models import User
from portal.documents.models import Invoice
from tests.conftest import Auth
from tests.documents.factories import give_requisites, issue

STAFF_PHONE = "+79990000099"


@pytest.fixture
def staff(db: Any) -> User:
    user = User(phone=STAFF_PHONE, name="Служба поддержки", is_staff=True)
    db.add(user)
    db.commit()
    return user


@pytest.fixture
def staff_client(client: FlaskClient, auth: Auth, staff: User) -> FlaskClient:
    auth.login(STAFF_PHONE)
    return client


@pytest.fixture
def invoice(app: Any, db: Any, make_account: Any) -> Invoice:
    account = make_account()
    give_requisites(db, account)
    return issue(app, db, account)
