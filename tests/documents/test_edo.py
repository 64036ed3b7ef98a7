"""УПД through ЭДО: the outbox sends each document once with a detached CMS, the emulator's buyer signs or rejects,
the accountant sees the status and resends, staff see rejections; the Diadoc client against HTTP answered locally."""

from __future__ import annotations

import base64
import json
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import requests
import responses
import sqlalchemy as sa

from devtools.edo_emulator import EdoEmulator, serve
from portal.audit import AuditLog
from portal.documents import edo
from portal.documents.edo_client import DiadocClient, EdoTransportError, LocalTestSigner
from portal.documents.models import EdoDocument, Upd
from portal.payments.bank import import_statement
from tests.conftest import post
from tests.documents.factories import ORG, give_requisites, issue, payment, statement

BUYER_EDO = "2BM-7728146350-772801001"
PAID_AT = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)


@pytest.fixture
def emulator(app):
    state = EdoEmulator(seller_participant_id=app.config["SELLER_EDO_ID"])
    server = serve(state)
    app.config["EDO_EMULATOR_URL"] = f"http://127.0.0.1:{server.server_port}"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def company(app, db, make_account):
    account = make_account(name="ООО «Ромашка»", accountant_phone="+79161234567")
    give_requisites(db, account, {**ORG, "edo_id": BUYER_EDO})
    return account


def paid_upd(app, db, account, number: str = "512") -> Upd:
    invoice = issue(app, db, account)
    data = statement(payment(number, invoice.amount, f"Оплата по счёту № {invoice.number}", day=date(2026, 11, 26)))
    with app.app_context():
        import_statement(db, data, file_name="s.txt", actor=None, now=PAID_AT)
    db.commit()
    return db.scalars(sa.select(Upd).where(Upd.invoice_id == invoice.id)).one()


def sweep(app, db, now=PAID_AT) -> list[str]:
    with app.app_context():
        return edo.sweep(db, now=now, config=app.config, instance_path=app.instance_path)


def verify_cms(tmp_path: Path, content: bytes, signature: bytes) -> None:
    (tmp_path / "c").write_bytes(content)
    (tmp_path / "s").write_bytes(signature)
    subprocess.run(
        [
            "openssl",
            "cms",
            "-verify",
            "-binary",
            "-noverify",
            "-inform",
            "DER",
            "-in",
            tmp_path / "s",
            "-content",
            tmp_path / "c",
        ],
        check=True,
        capture_output=True,
    )


def test_formed_upd_goes_to_the_buyer_once_signed_and_the_buyer_signs_it(
    app, db, company, emulator, auth, client, tmp_path
):
    upd = paid_upd(app, db, company)
    sweep(app, db)
    sweep(app, db)  # a second sweep (or a second server) sends nothing again
    assert len(emulator.messages) == 1
    message = next(iter(emulator.messages.values()))
    assert message.recipient_id == BUYER_EDO
    with app.app_context():
        from portal.documents.models import StoredFile
        from portal.documents.service import read_file

        xml = read_file(db.get(StoredFile, upd.xml_file_id))
    assert message.content == xml
    verify_cms(tmp_path, message.content, message.signature)  # a detached CMS over exactly the XML sent

    auth.login("+79161234567")
    page = client.get("/documents").get_data(as_text=True)
    assert "доставлен" in page and "Контур.Диадок" in page  # sent, and the operator reports it delivered

    emulator_client = requests.Session()
    base = app.config["EDO_EMULATOR_URL"]
    assert "Подписать" in emulator_client.get(base + "/").text
    emulator_client.post(f"{base}/_buyer/{message.message_id}/sign")
    sweep(app, db)
    db.expire_all()
    row = db.scalars(sa.select(EdoDocument)).one()
    assert (row.status, row.attempts) == ("signed", 0)
    assert "подписан покупателем" in client.get("/documents").get_data(as_text=True)


def test_rejection_shows_the_reason_flags_staff_and_the_accountant_resends(app, db, company, emulator, auth, client):
    paid_upd(app, db, company)
    sweep(app, db)
    message = next(iter(emulator.messages.values()))
    base = app.config["EDO_EMULATOR_URL"]
    requests.post(f"{base}/_buyer/{message.message_id}/reject", data={"reason": "Неверный КПП покупателя"})
    sweep(app, db)
    db.expire_all()
    row = db.scalars(sa.select(EdoDocument)).one()
    assert (row.status, row.reject_reason) == ("rejected", "Неверный КПП покупателя")
    assert db.scalar(sa.select(AuditLog.reason).where(AuditLog.action == "documents.edo_rejected")) == row.reject_reason

    auth.login("+79161234567")
    page = client.get("/documents").get_data(as_text=True)
    assert "отклонён" in page and "Неверный КПП покупателя" in page
    assert "УПД отклонён покупателем" in client.get("/documents/attention").get_data(as_text=True)
    resp = post(client, f"/documents/edo/{row.id}/resend")
    assert resp.status_code == 302
    sweep(app, db)
    assert len(emulator.messages) == 2  # a new message, under a new CustomDocumentId
    db.expire_all()
    assert db.scalars(sa.select(EdoDocument)).one().status == "delivered"


def test_staff_see_rejections_with_the_company_and_reason(app, db, company, emulator, client, auth):
    from portal.accounts.service import make_staff

    paid_upd(app, db, company)
    sweep(app, db)
    message = next(iter(emulator.messages.values()))
    requests.post(
        f"{app.config['EDO_EMULATOR_URL']}/_buyer/{message.message_id}/reject", data={"reason": "Нет договора"}
    )
    sweep(app, db)
    make_staff(db, phone="+79990000099", name="Поддержка")
    db.commit()
    auth.login("+79990000099")
    page = client.get("/support/edo").get_data(as_text=True)
    assert "ООО «Ромашка»" in page and "Нет договора" in page


def test_operator_down_is_retried_later_and_sent_once_it_answers(app, db, company, emulator):
    real = app.config["EDO_EMULATOR_URL"]
    app.config["EDO_EMULATOR_URL"] = "http://127.0.0.1:9"  # nothing listens
    paid_upd(app, db, company)
    sweep(app, db)
    db.expire_all()
    row = db.scalars(sa.select(EdoDocument)).one()
    assert (row.status, row.attempts) == ("pending", 1)
    assert "недоступен" in row.last_error and row.next_attempt_at == PAID_AT + timedelta(seconds=60)
    app.config["EDO_EMULATOR_URL"] = real
    sweep(app, db, now=PAID_AT + timedelta(seconds=30))  # not due yet
    assert not emulator.messages
    sweep(app, db, now=PAID_AT + timedelta(seconds=61))
    db.expire_all()
    assert db.scalars(sa.select(EdoDocument)).one().status == "delivered" and len(emulator.messages) == 1


def test_without_an_edo_id_nothing_is_sent(app, db, make_account, emulator):
    account = make_account()
    give_requisites(db, account)
    paid_upd(app, db, account)
    sweep(app, db)
    assert not emulator.messages and db.scalar(sa.select(sa.func.count()).select_from(EdoDocument)) == 0


# --- the Diadoc client against answers given locally ----------------------------------------------------------

API, AUTH = "https://diadoc-api.example", "https://identity.example"


def diadoc() -> DiadocClient:
    return DiadocClient(
        api_url=API,
        auth_url=AUTH,
        client_id="cid",
        client_secret="secret",
        refresh_token="rt",
        seller_participant_id="2BM-SELLER",
    )


def _boxes() -> None:
    responses.post(f"{AUTH}/connect/token", json={"access_token": "tok-1"})
    responses.get(
        f"{API}/GetMyOrganizations",
        json={
            "Organizations": [
                {"FnsParticipantId": "2BM-OTHER", "Boxes": [{"BoxIdGuid": "x"}]},
                {"FnsParticipantId": "2BM-SELLER", "Boxes": [{"BoxIdGuid": "seller-box"}]},
            ]
        },
    )
    responses.get(f"{API}/GetOrganization", json={"Boxes": [{"BoxIdGuid": "buyer-box"}]})


@responses.activate
def test_diadoc_client_posts_the_document_with_its_signature(tmp_path):
    _boxes()
    responses.post(
        f"{API}/V3/PostMessage",
        json={"MessageId": "m-1", "Entities": [{"EntityType": "Attachment", "EntityId": "e-1"}]},
    )
    signature = LocalTestSigner(tmp_path).sign(b"<xml/>")
    posted = diadoc().post_document(
        recipient_id="2BM-BUYER",
        type_named_id="UniversalTransferDocument",
        file_name="ON_NSCHFDOPPR_x.xml",
        content=b"<xml/>",
        signature=signature,
        custom_id="upd-1-0",
    )
    assert (posted.message_id, posted.entity_id) == ("m-1", "e-1")
    token_call = responses.calls[0].request
    assert "grant_type=refresh_token" in token_call.body and "client_secret=secret" in token_call.body
    post_call = responses.calls[-1].request
    assert post_call.headers["Authorization"] == "Bearer tok-1"
    assert "fnsParticipantId=2BM-BUYER" in responses.calls[2].request.url
    body = json.loads(post_call.body)
    attachment = body["DocumentAttachments"][0]
    assert (body["FromBoxId"], body["ToBoxId"]) == ("seller-box", "buyer-box")
    assert base64.b64decode(attachment["SignedContent"]["Content"]) == b"<xml/>"
    verify_cms(tmp_path, b"<xml/>", base64.b64decode(attachment["SignedContent"]["Signature"]))
    assert (attachment["CustomDocumentId"], attachment["NeedRecipientSignature"]) == ("upd-1-0", True)


@responses.activate
def test_diadoc_client_reads_a_rejection_with_its_reason_and_renews_an_expired_token():
    _boxes()
    responses.post(f"{AUTH}/connect/token", json={"access_token": "tok-2"})
    reject_xml = '<Файл><УведУточ ТекстУведУточ="Сумма не та"/></Файл>'.encode()
    responses.get(f"{API}/V5/GetMessage", status=401, json={})
    responses.get(
        f"{API}/V5/GetMessage",
        json={
            "MessageId": "m-1",
            "Entities": [
                {"EntityId": "e-1", "DocumentInfo": {"RecipientResponseStatus": "RecipientSignatureRequestRejected"}},
                {
                    "EntityId": "r-1",
                    "ParentEntityId": "e-1",
                    "AttachmentType": "SignatureRequestRejection",
                    "Content": {"Data": base64.b64encode(reject_xml).decode()},
                },
            ],
        },
    )
    state = diadoc().docflow_state(message_id="m-1", entity_id="e-1")
    assert (state.status, state.reason) == ("rejected", "Сумма не та")


@responses.activate
def test_diadoc_client_names_a_refusal():
    _boxes()
    responses.post(f"{API}/V3/PostMessage", status=400, body="Invalid signature")
    with pytest.raises(EdoTransportError, match="400"):
        diadoc().post_document(
            recipient_id="2BM-BUYER",
            type_named_id="UniversalTransferDocument",
            file_name="f.xml",
            content=b"x",
            signature=b"y",
            custom_id="upd-1-0",
        )


def test_the_emulator_refuses_a_signature_that_is_not_over_the_content(tmp_path):
    from devtools.edo_emulator import check_signature

    signature = LocalTestSigner(tmp_path).sign(b"<original/>")
    assert check_signature(b"<original/>", signature) is None
    assert check_signature(b"<forged/>", signature) == "Signature does not match the document"
    assert "not a DER" in check_signature(b"<original/>", b"garbage")


@pytest.mark.parametrize(
    ("typed", "stored", "operator"),
    [
        ("2BM-7728146350-772801001", "2BM-7728146350-772801001", "Контур.Диадок"),
        (" 2AE 11284CDD-D935-4603-881F-92DDB27D6BA0 ", "2AE11284CDD-D935-4603-881F-92DDB27D6BA0", "СБИС (Тензор)"),
    ],
)
def test_a_pasted_edo_id_is_cleaned_and_its_operator_named(app, db, make_account, typed, stored, operator):
    from portal.documents.service import get_requisites

    account = make_account()
    give_requisites(db, account, {**ORG, "edo_id": typed})
    row = get_requisites(db, account.id)
    assert (row.edo_id, row.edo_operator) == (stored, operator)


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"edo_id": "2ВМ-7728146350"}, "edo_id", "латинских букв"),  # Cyrillic В and М
        ({"edo_id": "2BM"}, "edo_id", "от 4 до 46"),
        ({"edo_id": "2BM-" + "1" * 43}, "edo_id", "от 4 до 46"),
        ({"edo_id": "2BM-7728146350", "edo_operator": "СБИС (Тензор)"}, "edo_operator", "Контур.Диадок"),
        ({"edo_operator": "Такском"}, "edo_id", "Укажите идентификатор"),
        ({"mail_mode": "weekly"}, "mail_mode", "Выберите"),
    ],
)
def test_bad_edo_requisites_are_refused_at_the_field(data, field, message):
    from portal.documents.requisites import RequisitesInvalid, clean_requisites

    with pytest.raises(RequisitesInvalid) as caught:
        clean_requisites({**ORG, **data})
    assert message in caught.value.errors[field]


def test_a_ukd_after_a_refund_of_rights_goes_to_the_buyer_as_a_correction_document(
    app, db, company, emulator, tmp_path
):
    from portal.billing.models import Order
    from portal.documents.corrections import form_pending_corrections
    from portal.documents.models import Invoice, StoredFile, Ukd
    from portal.documents.service import read_file
    from portal.payments import refunds

    upd = paid_upd(app, db, company)
    sweep(app, db)
    order_id = db.get(Invoice, upd.invoice_id).order_id
    now = PAID_AT + timedelta(days=30)
    with app.app_context():
        refunds.refund_rights(
            db,
            order_id,
            cut_on=now.date() + timedelta(days=1),
            amount=10_000,
            reason="Закрытие компании",
            actor=None,
            now=now,
            config=app.config,
        )
        db.commit()
        form_pending_corrections(db, now=now, config=app.config)
    assert db.get(Order, order_id).status == "paid"
    sweep(app, db, now=now)
    ukd = db.scalars(sa.select(Ukd)).one()
    rows = {row.kind: row for row in db.scalars(sa.select(EdoDocument))}
    assert set(rows) == {"upd", "ukd"} and rows["ukd"].document_id == ukd.id and rows["ukd"].number == ukd.number
    sent = [m for m in emulator.messages.values() if m.recipient_id == BUYER_EDO]
    assert len(sent) == 2
    with app.app_context():
        xml = read_file(db.get(StoredFile, ukd.xml_file_id))
    message = next(m for m in sent if m.content == xml)
    assert b"ON_NKORSCHFDOPPR_" + BUYER_EDO.encode() in xml  # addressed to the buyer's box by its ЭДО id
    verify_cms(tmp_path, message.content, message.signature)


def test_the_workers_send_documents_by_edo_every_minute_without_a_cron_line(app, db, company, emulator):
    """The periodic task a worker runs does what `flask documents edo-sweep` does: the УПД reaches the buyer once."""
    from portal.documents.tasks import edo_sweep_task
    from portal.tasks import huey

    assert "portal.documents.edo_sweep" in {t.__name__ for t in huey._registry._periodic_tasks}
    paid_upd(app, db, company)
    with app.app_context():
        edo_sweep_task.call_local()
        edo_sweep_task.call_local()
    db.expire_all()
    assert len(emulator.messages) == 1
    assert db.scalars(sa.select(EdoDocument)).one().status in ("sent", "delivered")
