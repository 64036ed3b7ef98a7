"""An account's departments: listing, creating, renaming and deleting them (the CRM's groups mirror here)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Membership, MembershipStatus, User
from portal.seats.errors import DepartmentInUse, DepartmentNotFound, MembershipConflict
from portal.seats.models import Department, MembershipDepartment
from portal.seats.rules import audit_change, clean_crm_id, clean_source, clean_title, is_id, lock_account


def list_departments(db: Session, account_id: int) -> list[Department]:
    return list(db.scalars(sa.select(Department).where(Department.account_id == account_id).order_by(Department.name)))


def department_member_counts(db: Session, account_id: int) -> dict[int, int]:
    """Active users per department of the account (a department nobody is in is absent)."""
    rows = db.execute(
        sa.select(MembershipDepartment.department_id, sa.func.count())
        .join(Membership, Membership.id == MembershipDepartment.membership_id)
        .where(Membership.account_id == account_id, Membership.status == MembershipStatus.ACTIVE.value)
        .group_by(MembershipDepartment.department_id)
    ).all()
    return {department_id: n for department_id, n in rows}


def _clean_department_name(raw: Any) -> str:
    return clean_title(raw, empty="Укажите название отдела.", too_long="Название отдела не длиннее 200 символов.")


def get_department(db: Session, account_id: int, department_id: int) -> Department:
    department = None
    if is_id(department_id):
        department = db.scalars(
            sa.select(Department).where(Department.account_id == account_id, Department.id == department_id)
        ).first()
    if department is None:
        raise DepartmentNotFound()
    return department


def find_department_by_crm_group(db: Session, account_id: int, crm_group_id: int) -> Department | None:
    return db.scalars(
        sa.select(Department).where(Department.account_id == account_id, Department.crm_group_id == crm_group_id)
    ).first()


def create_department(
    db: Session,
    *,
    account_id: int,
    name: str,
    source: str,
    now: datetime,
    crm_group_id: int | None = None,
    actor: User | None = None,
) -> Department:
    """A new department; with crm_group_id it mirrors that CRM group (one per group). Does not commit."""
    src = clean_source(source)
    clean = _clean_department_name(name)
    group_id = clean_crm_id(crm_group_id, "группы CRM")
    lock_account(db, account_id)
    if group_id is not None and find_department_by_crm_group(db, account_id, group_id) is not None:
        raise MembershipConflict(f"Отдел для группы CRM {group_id} уже есть.", field="crm_group_id")
    with db.begin_nested():
        department = Department(
            account_id=account_id,
            name=clean,
            source=src.value,
            crm_group_id=group_id,
            created_at=now,
            updated_at=now,
        )
        db.add(department)
        db.flush()
        audit_change(
            db,
            actor=actor,
            account_id=account_id,
            action="seats.department_created",
            source=src,
            before=None,
            after={"department_id": department.id, "name": clean, "crm_group_id": group_id},
        )
    return department


def rename_department(
    db: Session,
    *,
    account_id: int,
    department_id: int,
    name: str,
    source: str,
    now: datetime,
    actor: User | None = None,
) -> Department:
    src = clean_source(source)
    clean = _clean_department_name(name)
    lock_account(db, account_id)
    department = get_department(db, account_id, department_id)
    if department.name == clean:
        return department
    with db.begin_nested():
        before = department.name
        department.name = clean
        department.updated_at = now
        db.flush()
        audit_change(
            db,
            actor=actor,
            account_id=account_id,
            action="seats.department_renamed",
            source=src,
            before={"department_id": department.id, "name": before},
            after={"department_id": department.id, "name": clean},
        )
    return department


def delete_department(
    db: Session,
    *,
    account_id: int,
    department_id: int,
    source: str,
    now: datetime,
    actor: User | None = None,
) -> None:
    """Remove a department nobody active is in (deactivated users simply lose it). Does not commit."""
    src = clean_source(source)
    lock_account(db, account_id)
    department = get_department(db, account_id, department_id)
    if department_member_counts(db, account_id).get(department.id):
        raise DepartmentInUse(f"В отделе «{department.name}» есть активные пользователи.")
    with db.begin_nested():
        audit_change(
            db,
            actor=actor,
            account_id=account_id,
            action="seats.department_deleted",
            source=src,
            before={"department_id": department.id, "name": department.name, "crm_group_id": department.crm_group_id},
            after=None,
        )
        db.execute(
            sa.delete(MembershipDepartment)
            .where(MembershipDepartment.department_id == department.id)
            .execution_options(synchronize_session=False)
        )
        db.delete(department)
        db.flush()
