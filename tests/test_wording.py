"""Words on screen say what is true, in one style: company names as typed, without doubled guillemets."""

from __future__ import annotations

import pytest

from portal.textinput import quoted
from tests.conftest import post


@pytest.mark.parametrize(
    "name, shown",
    [
        ("ООО «Ромашка»", "ООО «Ромашка»"),
        ('ООО "Ромашка"', 'ООО "Ромашка"'),
        ("Ромашка", "«Ромашка»"),
        ("ИП Соколов С. В.", "«ИП Соколов С. В.»"),
    ],
)
def test_a_name_is_quoted_once(name, shown):
    assert quoted(name) == shown


def test_pages_and_messages_show_the_name_as_typed(client, auth, make_account, add_member):
    """«ООО «Ромашка»» — nested guillemets — on the plans page and in the switcher's message."""
    first = make_account(name="ООО «Ромашка»", owner_phone="+79165550001")
    second = make_account(name="ООО «Василёк»", owner_phone="+79165550002")
    add_member(second, "+79165550001")
    auth.login("+79165550001")
    plans = client.get("/plans").get_data(as_text=True)
    assert "Сейчас у ООО «Ромашка»:" in plans and "««" not in plans and "»»" not in plans
    resp = post(client, "/account/switch", {"account_id": second.id}, follow_redirects=True)
    html = resp.get_data(as_text=True)
    assert "Вы работаете с компанией ООО «Василёк»." in html and "»»" not in html
    assert first.id != second.id
