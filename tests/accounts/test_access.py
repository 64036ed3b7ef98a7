"""Roles, the account switcher, staff, and that one account never sees another's data."""

from __future__ import annotations

import sqlalchemy as sa
from click.testing import CliRunner  # noqa: F401

from portal.accounts.models import Role, User
from tests.conftest import post


def test_switcher_lists_every_account_and_switches(client, auth, make_account, add_member):
    a = make_account(name="ООО «Альфа»", owner_phone="+79160000101")
    b = make_account(name="ООО «Бета»", owner_phone="+79160000102")
    add_member(b, "+79160000101", role=Role.ACCOUNTANT)
    auth.login("+79160000101")
    page = client.get("/").get_data(as_text=True)
    assert "ООО «Альфа»" in page and "ООО «Бета»" in page
    resp = post(client, "/account/switch", {"account_id": str(b.id)})
    assert resp.status_code == 302
    page = client.get("/").get_data(as_text=True)
    assert "<h1>ООО «Бета»</h1>" in page
    assert a.id != b.id


def test_switching_to_someone_elses_account_is_404(client, auth, make_account):
    make_account(owner_phone="+79160000103")
    other = make_account(name="ООО «Чужая»", owner_phone="+79160000104")
    auth.login("+79160000103")
    resp = post(client, "/account/switch", {"account_id": str(other.id)})
    assert resp.status_code == 404
    assert "ООО «Чужая»" not in client.get("/").get_data(as_text=True)


def test_staff_add_command_makes_staff(app, db):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["staff", "add", "8 999 000-00-98", "--name", "Ирина"])
    assert result.exit_code == 0, result.output
    user = db.scalars(sa.select(User).where(User.phone == "+79990000098")).one()
    assert user.is_staff
    bad = runner.invoke(args=["staff", "add", "123"])
    assert bad.exit_code != 0


def test_every_view_declares_who_may_enter(app):
    undeclared = [
        name for name, view in app.view_functions.items() if name != "static" and not hasattr(view, "_access")
    ]
    assert undeclared == []
