"""The header navigation: each feature registers its entries and the roles that see them."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app


@dataclass(frozen=True)
class NavItem:
    endpoint: str
    label: str
    roles: tuple[str, ...]  # account roles; "staff" for the vendor's support; "public" for everyone
    order: int = 50


_ITEMS: list[NavItem] = []


def register_nav(endpoint: str, label: str, roles: tuple[str, ...], order: int = 50) -> None:
    if not any(i.endpoint == endpoint for i in _ITEMS):
        _ITEMS.append(NavItem(endpoint, label, roles, order))


def nav_for(role: str | None, is_staff: bool) -> list[NavItem]:
    views = current_app.view_functions
    items = []
    for item in sorted(_ITEMS, key=lambda i: i.order):
        if item.endpoint not in views:
            continue
        if "public" in item.roles or (role and role in item.roles) or (is_staff and "staff" in item.roles):
            items.append(item)
    return items
