"""The demo for people (`make run`): two companies, their people and what each feature shows off.

Never shipped (pyproject packages only `portal*`); tests build their own data with factories. `seed_demo_data`
creates the companies, then each feature's seed adds its part, in the order one needs the other's: billing (a paid
plan), documents (requisites), the CRM (a connected emulator), support (a request and a short bank payment that needs
the requisites).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from portal.accounts.models import Account, Membership, MembershipStatus, Role, Source, User
from portal.db import utcnow

from . import billing, crm, documents, support

DEMO_OWNER = "+79990000001"
DEMO_ACCOUNTANT = "+79990000002"
DEMO_SMALL_OWNER = "+79990000003"
DEMO_STAFF = "+79990000099"
DEMO_MEMBERS = [
    ("+79990000010", "Борис Кузнецов"),
    ("+79990000011", "Вера Попова"),
    ("+79990000012", "Глеб Васильев"),
    ("+79990000013", "Дарья Новикова"),
    ("+79990000014", "Егор Морозов"),
    ("+79990000015", "Жанна Волкова"),
    ("+79990000016", "Захар Лебедев"),
]
FEATURE_SEEDS = (billing.seed, documents.seed, crm.seed, support.seed)


def _member(db: Any, account: Account, phone: str, name: str, role: Role) -> User:
    user = db.scalars(sa.select(User).where(User.phone == phone)).first()
    if user is None:
        user = User(phone=phone, name=name)
        db.add(user)
        db.flush()
    exists = db.scalars(
        sa.select(Membership).where(Membership.account_id == account.id, Membership.user_id == user.id)
    ).first()
    if exists is None:
        db.add(
            Membership(
                account_id=account.id,
                user_id=user.id,
                role=role.value,
                status=MembershipStatus.ACTIVE.value,
                source=Source.PORTAL.value,
                name=name,
                seen_at=utcnow(),
            )
        )
    return user


def seed_demo_data(db: Any) -> dict[str, Any]:
    """Idempotent: finds the demo companies by their owners, creates what is missing."""
    demo: dict[str, Any] = {}

    def company(owner_phone: str, owner_name: str, name: str) -> Account:
        owner = db.scalars(sa.select(User).where(User.phone == owner_phone)).first()
        if owner is not None:
            m = db.scalars(
                sa.select(Membership).where(Membership.user_id == owner.id, Membership.role == Role.OWNER.value)
            ).first()
            if m is not None:
                return db.get(Account, m.account_id)
        account = Account(name=name, created_at=utcnow())
        db.add(account)
        db.flush()
        _member(db, account, owner_phone, owner_name, Role.OWNER)
        return account

    big = company(DEMO_OWNER, "Анна Смирнова", "ООО «Ромашка»")
    _member(db, big, DEMO_ACCOUNTANT, "Ольга Бухгалтерова", Role.ACCOUNTANT)
    for phone, name in DEMO_MEMBERS:
        _member(db, big, phone, name, Role.MEMBER)
    small = company(DEMO_SMALL_OWNER, "Сергей Соколов", "ИП Соколов С. В.")
    _member(db, small, "+79990000020", "Мария Соколова", Role.MEMBER)
    _member(db, small, "+79990000021", "Павел Орлов", Role.MEMBER)
    # The accountant serves both companies, as accountants often do: the switcher shows both.
    _member(db, small, DEMO_ACCOUNTANT, "Ольга Бухгалтерова", Role.ACCOUNTANT)
    db.flush()
    staff = db.scalars(sa.select(User).where(User.phone == DEMO_STAFF)).first()
    if staff is None:
        staff = User(phone=DEMO_STAFF, name="Служба поддержки", is_staff=True)
        db.add(staff)
    db.commit()
    demo.update(big=big, small=small, staff=staff)
    for seed in FEATURE_SEEDS:
        seed(db, demo)
        db.commit()
    return demo
