"""The task queue as the portal uses it: sent after the commit that needs it, runs shown with progress to the
people allowed to see them, failures explained with a retry, work done once however often it is run."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from portal.audit import AuditLog
from portal.db import utcnow
from portal.payments.models import StatementLine
from portal.payments.tasks import STATEMENT_RUN, statement_import_run
from portal.seats.crm.tasks import SYNC_RUN
from portal.tasks import _PENDING_KEY, enqueue_after_commit, task
from portal.tasks.models import TaskRun
from portal.tasks.runs import put_progress, start_run, sweep
from tests.conftest import post
from tests.documents.factories import payment, statement

CALLS: list[int] = []


@task(retries=0)
def remember(value: int) -> None:
    CALLS.append(value)


def test_a_task_is_sent_only_when_its_transaction_commits(app: Any, db: Any) -> None:
    CALLS.clear()
    with app.app_context():
        enqueue_after_commit(db, remember, 1)
        with db.begin_nested():
            enqueue_after_commit(db, remember, 2)
        assert CALLS == []  # a savepoint released is not the commit
        db.commit()
        assert CALLS == [1, 2]

        enqueue_after_commit(db, remember, 3)
        db.rollback()
        db.commit()
        assert CALLS == [1, 2]  # rolled back: never sent


def upload(client: Any, data: bytes, name: str = "выписка.txt") -> Any:
    return post(
        client,
        "/support/statements",
        {"statement": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
    )


def test_a_statement_upload_answers_at_once_and_its_page_shows_the_result(
    staff_client: Any, db: Any, invoice: Any
) -> None:
    data = statement(payment("76", invoice.amount, f"Оплата счёта № {invoice.number}"), payment("77", 500, "Прочее"))

    resp = upload(staff_client, data)

    assert resp.status_code == 302
    location = resp.headers["Location"]
    run = db.scalars(sa.select(TaskRun)).one()
    assert location.endswith(f"/support/statements?run={run.id}") and run.kind == STATEMENT_RUN
    status = staff_client.get(f"/tasks/{run.id}/status").get_json()
    assert status["status"] == "done" and status["done"] == status["total"] == 2
    assert status["result_url"].startswith("/support/statements?import=")
    page = staff_client.get(location).get_data(as_text=True)
    assert "Готово. Выписка загружена." in page and "сопоставлено: 1, не сопоставлено: 1" in page
    assert "Сопоставлены автоматически" in page and invoice.number in page
    # The file is kept with the run, so a worker on any server can read it.
    assert db.scalar(sa.select(TaskRun.input_data).where(TaskRun.id == run.id)) == data


def test_a_broken_statement_is_refused_on_the_spot_and_queues_nothing(staff_client: Any, db: Any) -> None:
    resp = upload(staff_client, b"not a statement")
    assert resp.status_code == 400 and "Файл не принят, ничего не загружено." in resp.get_data(as_text=True)
    assert db.scalars(sa.select(TaskRun)).all() == []


def test_a_run_done_twice_changes_nothing_the_second_time(staff_client: Any, app: Any, db: Any, invoice: Any) -> None:
    upload(staff_client, statement(payment("76", invoice.amount, f"Оплата счёта № {invoice.number}")))
    run = db.scalars(sa.select(TaskRun)).one()
    lines = db.scalar(sa.select(sa.func.count()).select_from(StatementLine))
    # The same message delivered again (a retry after a lost acknowledgement, the sweep): the run is finished.
    with app.app_context():
        statement_import_run.call_local(run.id)
    # And the run started over by hand imports nothing new: the payment orders are known.
    db.execute(sa.update(TaskRun).where(TaskRun.id == run.id).values(status="queued"))
    db.commit()
    with app.app_context():
        statement_import_run.call_local(run.id)
    db.expire_all()
    assert db.scalar(sa.select(sa.func.count()).select_from(StatementLine)) == lines == 1
    assert db.get(TaskRun, run.id).status == "done"
    assert "уже загружено ранее: 1" in db.get(TaskRun, run.id).message


def test_a_failed_run_says_what_failed_offers_a_retry_and_is_seen_only_by_its_company(
    app: Any, db: Any, client: Any, auth: Any, make_account: Any, add_member: Any
) -> None:
    ours = make_account(owner_phone="+79990001001")
    theirs = make_account(owner_phone="+79990001002")
    with app.app_context():
        run = start_run(db, kind=SYNC_RUN, title="Синхронизация с CRM", account_id=ours.id, user_id=None)
        db.commit()  # runs here (immediate mode): this company has no CRM connected
    run_id = run.id

    auth.login("+79990001001")
    page = client.get(f"/tasks/{run_id}").get_data(as_text=True)
    assert "Задача не выполнена. CRM не подключена." in page and "Повторить" in page
    assert client.get(f"/tasks/{run_id}/status").get_json()["status"] == "failed"
    resp = post(client, f"/tasks/{run_id}/retry")
    assert resp.status_code == 302
    db.expire_all()
    assert db.get(TaskRun, run_id).attempts == 2  # it ran again (and failed again, for the same reason)

    auth.logout()
    auth.login("+79990001002")
    assert theirs.id != ours.id
    assert client.get(f"/tasks/{run_id}").status_code == 404
    assert client.get(f"/tasks/{run_id}/status").status_code == 404


def test_the_sweep_sends_again_a_run_whose_message_was_lost(staff_client: Any, app: Any, db: Any, invoice: Any) -> None:
    data = statement(payment("76", invoice.amount, f"Оплата счёта № {invoice.number}"))
    with app.app_context():
        run = start_run(
            db, kind=STATEMENT_RUN, title="Выписка", account_id=None, user_id=None, params={}, input_data=data
        )
        db.info.pop(_PENDING_KEY)  # the process died between the commit and the queue
        db.commit()
        assert db.get(TaskRun, run.id).status == "queued"
        assert sweep(utcnow()) == 0  # too early: it may simply be waiting its turn
        assert sweep(utcnow() + timedelta(minutes=3)) == 1
    db.expire_all()
    assert db.get(TaskRun, run.id).status == "done"
    assert db.scalars(sa.select(AuditLog).where(AuditLog.action == "support.statement_imported")).one()


def test_the_sweep_takes_over_a_run_whose_worker_died_but_not_a_live_one(
    staff_client: Any, app: Any, db: Any, invoice: Any
) -> None:
    data = statement(payment("76", invoice.amount, f"Оплата счёта № {invoice.number}"))
    long_ago = utcnow() - timedelta(minutes=10)
    with app.app_context():
        dead, live = (
            start_run(db, kind=STATEMENT_RUN, title=t, account_id=None, user_id=None, params={}, input_data=data)
            for t in ("Выписка, чей обработчик убит", "Выписка, которая долго идёт")
        )
        db.info.pop(_PENDING_KEY)
        db.flush()
        for run in (dead, live):
            run.status, run.started_at, run.heartbeat_at = "running", long_ago, long_ago
        db.commit()
        put_progress(live.id, 10, 100)  # this one's worker still reports

        assert sweep(utcnow()) == 1

    db.expire_all()
    assert db.get(TaskRun, dead.id).status == "done" and db.get(TaskRun, dead.id).attempts == 1
    assert db.get(TaskRun, live.id).status == "running"
