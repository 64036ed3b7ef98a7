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


def test_an_invoice_deadline_reads_as_the_invoice_prints_it():
    """The dashboard said «до 08.12.2026 00:00» for an invoice that says «до 7 декабря 2026 г.»."""
    from datetime import date, timedelta

    from portal.dashboard import valid_through
    from portal.timeutil import format_date_ru, msk_midnight

    valid_until = date(2026, 12, 7)  # the invoice's last day
    expires_at = msk_midnight(valid_until + timedelta(days=1))  # what the order keeps (documents.invoices)
    assert valid_through(expires_at) == format_date_ru(valid_until) == "7 декабря 2026 г."
