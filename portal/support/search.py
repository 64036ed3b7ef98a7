"""Finding an account by its number, ИНН, a member's phone or the company's (legal) name."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Account, Membership, Role, User
from portal.accounts.phone import InvalidPhone, normalize_phone
from portal.documents.models import Requisites


@dataclass(frozen=True)
class AccountHit:
    account: Account
    matched_by: str
    requisites: Requisites | None
    owners: list[User]


_ID_QUERY = re.compile(r"^(?:#|№|id)?\s*(\d{1,9})$", re.IGNORECASE)
_PHONE_CHARS = re.compile(r"^[\d\s()+\-]+$")
_QUOTES = "«»\"'„“”"


def _name_tokens(query: str) -> list[str]:
    text = query
    for q in _QUOTES:
        text = text.replace(q, " ")
    return [t for t in text.split() if t]


def _like_escape(text: str) -> str:
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


def _name_matches(db: Session, tokens: Sequence[str], limit: int) -> list[int]:
    """Accounts whose name or legal name holds every word, case-insensitively (Cyrillic included)."""
    if db.get_bind().dialect.name == "postgresql":
        # `name ILIKE '%word%'` with the pattern built here: the trigram indexes (ix_accounts_name_trgm,
        # ix_requisites_name_trgm) answer it; `lower(name) LIKE …` would scan every name.
        def every(col: Any) -> Any:
            return sa.and_(*(col.ilike(f"%{_like_escape(t)}%", escape="/") for t in tokens))

        ids = set(db.scalars(sa.select(Account.id).where(every(Account.name)).limit(limit)))
        ids |= set(db.scalars(sa.select(Requisites.account_id).where(every(Requisites.name)).limit(limit)))
        return sorted(ids)
    # SQLite's lower() knows only ASCII, so a local database is searched here; production runs on PostgreSQL.
    folded = [t.casefold() for t in tokens]
    names = db.execute(sa.select(Account.id, Account.name)).all()
    names += db.execute(sa.select(Requisites.account_id, Requisites.name)).all()
    return sorted({i for i, name in names if all(t in (name or "").casefold() for t in folded)})[:limit]


def search_accounts(db: Session, query: str | None, *, limit: int = 50) -> list[AccountHit]:
    """By account number, ИНН, a member's phone (or its last digits) or the company's (legal) name."""
    text = " ".join((query or "").split())[:100]
    if not text:
        return []
    matched: dict[int, str] = {}

    def add(ids: Any, how: str) -> None:
        for account_id in ids:
            matched.setdefault(account_id, how)

    digits = re.sub(r"\D", "", text)
    id_match = _ID_QUERY.match(text)
    if id_match:
        account_id = int(id_match.group(1))
        if db.get(Account, account_id) is not None:
            add([account_id], "номер аккаунта")
    if _PHONE_CHARS.match(text) and len(digits) >= 4:
        add(
            db.scalars(sa.select(Requisites.account_id).where(Requisites.inn.startswith(digits)).limit(limit)),
            "ИНН",
        )
        phones: list[str] = []
        try:
            phones.append(normalize_phone(text))
        except InvalidPhone:
            pass
        phone_filter = (
            User.phone.in_(phones) if phones else User.phone.like(f"%{digits}%")
        )  # a full number exactly, else its digits anywhere (e.g. the last seven; ix_users_phone_trgm on PostgreSQL)
        if phones or len(digits) >= 5:
            add(
                db.scalars(
                    sa.select(Membership.account_id)
                    .join(User, User.id == Membership.user_id)
                    .where(phone_filter)
                    .distinct()
                    .limit(limit)
                ),
                "телефон сотрудника",
            )
    tokens = _name_tokens(text)
    if tokens and any(ch.isalpha() for ch in text):
        add(_name_matches(db, tokens, limit), "название")
    ids = list(matched)[:limit]
    if not ids:
        return []
    accounts = {a.id: a for a in db.scalars(sa.select(Account).where(Account.id.in_(ids)))}
    requisites = {r.account_id: r for r in db.scalars(sa.select(Requisites).where(Requisites.account_id.in_(ids)))}
    owners: dict[int, list[User]] = {}
    for m_account_id, user in db.execute(
        sa.select(Membership.account_id, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.account_id.in_(ids), Membership.role == Role.OWNER.value)
        .order_by(User.id)
    ).all():
        owners.setdefault(m_account_id, []).append(user)
    hits = [AccountHit(accounts[i], matched[i], requisites.get(i), owners.get(i, [])) for i in ids if i in accounts]
    hits.sort(key=lambda h: h.account.name.casefold())
    return hits
