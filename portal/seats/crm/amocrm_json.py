"""The shapes of amoCRM's answers: a JSON object, its embedded lists, a user, a refusal's problem document."""

from __future__ import annotations

from typing import Any

import requests

from .base import DEFAULT_GROUP_ID, CrmBadResponse, CrmUser


def problem_details(response: requests.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if k in ("title", "detail", "validation-errors", "status")}


def validation_reasons(errors: Any) -> list[str]:
    reasons: list[str] = []
    if not isinstance(errors, list):
        return reasons
    for item in errors:
        for error in item.get("errors", []) if isinstance(item, dict) else []:
            if isinstance(error, dict):
                path, detail = error.get("path"), error.get("detail") or error.get("code")
                reasons.append(f"{path}: {detail}" if path else str(detail))
    return reasons


def json_object(response: requests.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as exc:
        raise CrmBadResponse("CRM вернула ответ, который не удалось разобрать как JSON") from exc
    if not isinstance(data, dict):
        raise CrmBadResponse("CRM вернула ответ неожиданного вида: ожидался объект JSON")
    return data


def embedded(data: dict[str, Any]) -> dict[str, Any]:
    embedded = data.get("_embedded")
    if not isinstance(embedded, dict):
        raise CrmBadResponse("CRM вернула ответ без данных (_embedded)")
    return embedded


def json_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _bool(rights: dict[str, Any], key: str) -> bool:
    value = rights[key]
    if not isinstance(value, bool):
        raise TypeError(f"rights.{key} must be a boolean")
    return value


def _optional_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def user_from_json(raw: Any) -> CrmUser:
    # The usual shape, checked by exact types in one expression (a 10 000-user CRM is 10 000 of these per run);
    # anything else takes the field-by-field path below, which accepts or refuses it as it always did.
    try:
        rights = raw["rights"]
        uid, name, email, phone = raw["id"], raw["name"], raw["email"], raw["phone_number"]
        active, free, admin, group_id = rights["is_active"], rights["is_free"], rights["is_admin"], rights["group_id"]
    except (KeyError, TypeError):
        return _user_from_any_json(raw)  # a field left out (amoCRM omits some), or not an object
    if (
        type(raw) is dict
        and type(rights) is dict
        and type(uid) is int
        and type(name) is str
        and (email is None or type(email) is str)
        and (phone is None or type(phone) is str)
        and type(active) is bool
        and type(free) is bool
        and type(admin) is bool
        and (group_id is None or type(group_id) is int)
    ):
        group = DEFAULT_GROUP_ID if group_id is None else group_id
        return CrmUser(uid, name, email or None, phone or None, active, free, admin, group)
    return _user_from_any_json(raw)


def _user_from_any_json(raw: Any) -> CrmUser:
    if not isinstance(raw, dict):
        raise TypeError("user must be an object")
    rights = raw["rights"]
    if not isinstance(rights, dict):
        raise TypeError("rights must be an object")
    group_id = rights.get("group_id")
    return CrmUser(
        id=json_int(raw["id"]),
        name=str(raw.get("name") or ""),
        email=_optional_str(raw.get("email")),
        phone=_optional_str(raw.get("phone_number")),
        is_active=_bool(rights, "is_active"),
        is_free=_bool(rights, "is_free"),
        is_admin=_bool(rights, "is_admin"),
        # amoCRM answers null for the users of its default group, which it lists with id 0.
        group_id=DEFAULT_GROUP_ID if group_id is None else json_int(group_id),
    )
