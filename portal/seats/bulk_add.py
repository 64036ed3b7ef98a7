"""Adding many people to an account at once (the CRM's first import) in a fixed number of statements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Membership, MembershipStatus, Role, User
from portal.audit import AuditLog, audit_values
from portal.seats.errors import DepartmentNotFound, MembershipError
from portal.seats.events import EventKind, MembershipEvent, MembershipUser, emit
from portal.seats.models import Department, MembershipDepartment
from portal.seats.rules import (
    IN_CHUNK,
    added_record,
    clean_crm_id,
    clean_email,
    clean_name,
    clean_phone,
    clean_role,
    clean_source,
    is_id,
    lock_account,
)


@dataclass(frozen=True)
class NewUser:
    """One person for `add_users`: what `add_user` takes, for many at once."""

    phone: str
    name: str
    email: str | None = None
    crm_user_id: int | None = None
    department_ids: tuple[int, ...] = ()
    role: str = Role.MEMBER.value


@dataclass(frozen=True)
class Added:
    """A person `add_users` put in the account as a new membership."""

    membership_id: int
    user_id: int


def add_users(
    db: Session,
    *,
    account_id: int,
    people: Sequence[NewUser],
    source: str,
    now: datetime,
    actor: User | None = None,
) -> list[Added | MembershipError | None]:
    """Add many people as new active memberships with the same outcome as `add_user` one by one (the same rows,
    audit records and events), in a fixed number of statements: one account lock, one look-up per chunk of
    phones, and one multi-row INSERT each for persons, memberships, departments and audit records.

    The answer, per person: `Added`; a MembershipError for one `add_user` would refuse (bad data, an unknown
    department); or None for one this bulk path leaves to `add_user` — a phone or CRM user the account already
    has (a duplicate or a comeback: a rare case, with its own rules) or one repeated within `people`. Does not
    commit.
    """
    src = clean_source(source)
    lock_account(db, account_id)
    answers: list[Added | MembershipError | None] = [None] * len(people)
    cleaned: list[tuple[int, str, str, str | None, Role, int | None, tuple[int, ...]]] = []
    for index, person in enumerate(people):
        try:
            cleaned.append(
                (
                    index,
                    clean_phone(person.phone),
                    clean_name(person.name),
                    clean_email(person.email),
                    clean_role(person.role),
                    clean_crm_id(person.crm_user_id),
                    tuple(sorted(set(person.department_ids))),
                )
            )
        except MembershipError as exc:
            answers[index] = exc
    departments = {d for row in cleaned for d in row[6]}
    if departments:
        if not all(is_id(d) for d in departments):
            known: set[int] = set()
        else:
            known = set(
                db.scalars(
                    sa.select(Department.id).where(
                        Department.account_id == account_id, Department.id.in_(sorted(departments))
                    )
                )
            )
        for row in cleaned:
            if not set(row[6]) <= known:
                answers[row[0]] = DepartmentNotFound()
        cleaned = [row for row in cleaned if answers[row[0]] is None]
    # What the account already has, as plain columns: a person who is (or was) here goes through add_user.
    taken_phones: set[str] = set()
    taken_crm: set[int] = set()
    for phone, crm_id in db.execute(
        sa.select(User.phone, Membership.crm_user_id)
        .join(User, User.id == Membership.user_id)
        .where(Membership.account_id == account_id)
    ):
        taken_phones.add(phone)
        if crm_id is not None:
            taken_crm.add(crm_id)
    simple = []
    for row in cleaned:
        _, phone, _, _, _, crm_id, _ = row
        if phone in taken_phones or (crm_id is not None and crm_id in taken_crm):
            continue  # answered None: add_user's own path (a duplicate, a comeback or a repeat within `people`)
        taken_phones.add(phone)
        if crm_id is not None:
            taken_crm.add(crm_id)
        simple.append(row)
    if not simple:
        return answers
    # Persons: the portal's existing ones by phone (their own profile untouched), the rest created.
    phones = [row[1] for row in simple]
    person_of = _persons_by_phone(db, phones)
    missing = [row for row in simple if row[1] not in person_of]
    if missing:
        try:
            with db.begin_nested():
                person_of.update(_insert_persons(db, missing, now))
        except sa.exc.IntegrityError:
            # Someone added some of these people elsewhere a moment ago: their rows are the persons.
            person_of = _persons_by_phone(db, phones)
            still = [row for row in simple if row[1] not in person_of]
            if still:
                person_of.update(_insert_persons(db, still, now))
    # RETURNING with the natural key rather than in parameter order: SQLite can only keep the order one row
    # per statement, while unordered rows come back from one multi-row INSERT per batch.
    membership_of = dict(
        insert_rows(
            db,
            Membership,
            [
                {
                    "account_id": account_id,
                    "user_id": person_of[phone],
                    "role": role.value,
                    "status": MembershipStatus.ACTIVE.value,
                    "source": src.value,
                    "crm_user_id": crm_id,
                    "name": name,
                    "email": mail,
                    "created_at": now,
                    "updated_at": now,
                }
                for _, phone, name, mail, role, crm_id, _ in simple
            ],
            Membership.user_id,
            Membership.id,
        ).all()
    )
    membership_ids = [membership_of[person_of[row[1]]] for row in simple]
    placements = [
        {"membership_id": mid, "department_id": dept}
        for mid, row in zip(membership_ids, simple, strict=True)
        for dept in row[6]
    ]
    if placements:
        insert_rows(db, MembershipDepartment, placements)
    audits = []
    note = f"источник: {src.title}"
    for mid, (index, phone, name, _mail, role, crm_id, dept_ids) in zip(membership_ids, simple, strict=True):
        user_id = person_of[phone]
        after = added_record(
            user_id=user_id, phone=phone, name=name, role=role, source=src, crm_id=crm_id, dept_ids=dept_ids
        )
        audits.append(
            audit_values(
                actor=actor, account=account_id, action="seats.user_added", before=None, after=after, reason=note
            )
        )
        answers[index] = Added(mid, user_id)
    insert_rows(db, AuditLog, audits)
    for mid, (_, phone, name, mail, role, crm_id, dept_ids) in zip(membership_ids, simple, strict=True):
        user = MembershipUser(
            user_id=person_of[phone],
            membership_id=mid,
            account_id=account_id,
            phone=phone,
            name=name,
            email=mail,
            role=role.value,
            status=MembershipStatus.ACTIVE.value,
            source=src.value,
            crm_user_id=crm_id,
            department_ids=dept_ids,
        )
        emit(
            db,
            MembershipEvent(
                kind=EventKind.ADDED,
                account_id=account_id,
                user=user,
                source=src.value,
                actor_user_id=actor.id if actor is not None else None,
                at=now,
                changes={},
            ),
        )
    return answers


def insert_rows(db: Session, model: type[Any], rows: Sequence[dict[str, Any]], *returning: Any) -> sa.CursorResult[Any]:
    """Rows of one model (every row the same keys) in one multi-row INSERT per batch, through Core: the ORM's bulk
    INSERT spends ~10 µs a row on bookkeeping for objects nobody makes here. Pending objects are flushed first, as
    `Session.execute` would."""
    db.flush()
    statement = sa.insert(model.__table__)
    return db.connection().execute(statement.returning(*returning) if returning else statement, rows)


def _insert_persons(db: Session, rows: Sequence[tuple[Any, ...]], now: datetime) -> dict[str, int]:
    return dict(
        insert_rows(
            db,
            User,
            [{"phone": r[1], "name": r[2], "email": r[3], "created_at": now} for r in rows],
            User.phone,
            User.id,
        ).all()
    )


def _persons_by_phone(db: Session, phones: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(phones), IN_CHUNK):
        found.update(
            db.execute(sa.select(User.phone, User.id).where(User.phone.in_(phones[start : start + IN_CHUNK]))).all()
        )
    return found
