"""Fixtures and strategies for the bad-input tests: the populated portal of the security tests, and hostile text."""

from __future__ import annotations

import os
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.security.conftest import module_sms, world  # noqa: F401 - fixtures shared with the security tests

# Few examples per target, many targets: the suite stays fast. On a developer's machine every run draws new inputs;
# in CI the same ones (derandomized), so a red CI is a finding to reproduce, never a roll of the dice.
settings.register_profile(
    "proof",
    max_examples=25,
    deadline=None,
    database=None,
    derandomize=os.environ.get("CI") == "true",
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("proof")

NASTY = [
    "",
    " ",
    "0",
    "-1",
    "1e309",
    "NaN",
    "99999999999999999999999999",
    "2026-02-30",
    "31.12.9999",
    "+7 (999) 000-00-01",
    "8 999 000 00 01",
    "٣٤٥٦",
    "１２３４５６",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "${7*7}{{7*7}}",
    "\x00",
    "\u202e\u200b",
    "../../etc/passwd",
    "ООО «Ромашка»",
    "7728146350",
    "users-24",
    "users-1000000",
    "12",
    "24",
    "y",
    "on",
    "a" * 5000,
]


def hostile_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(NASTY),
        st.text(max_size=60),
        st.integers(min_value=-(10**20), max_value=10**20).map(str),
        st.text(alphabet="0123456789 +-()", max_size=20),
    )


class _Forms(HTMLParser):
    """The POST forms of a page: where each goes and which fields (with a select's options) it has."""

    def __init__(self, page_path: str) -> None:
        super().__init__()
        self.page_path = page_path
        self.forms: list[dict[str, Any]] = []
        self._current: dict[str, Any] | None = None
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("method", "get").lower() == "post":
            action = urlsplit(urljoin(self.page_path, a.get("action") or self.page_path)).path
            self._current = {"action": action, "fields": {}}
            self.forms.append(self._current)
        elif self._current is not None and tag in ("input", "textarea", "select", "button") and a.get("name"):
            name = a["name"]
            # The session's CSRF token (also under a form's prefix, `refund4-csrf_token`) is not data a person types.
            if name == "csrf_token" or name.endswith("-csrf_token"):
                return
            options = self._current["fields"].setdefault(name, [])
            if a.get("value") and tag in ("input", "button"):
                options.append(a["value"])
            if tag == "select":
                self._select = name
        elif tag == "option" and self._current is not None and self._select and "value" in a:
            self._current["fields"][self._select].append(a["value"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None
        elif tag == "select":
            self._select = None


def forms_on(page_path: str, html: str) -> list[dict[str, Any]]:
    parser = _Forms(page_path)
    parser.feed(html)
    return parser.forms
