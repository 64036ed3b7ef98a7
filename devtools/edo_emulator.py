"""A local ЭДО operator for development: Kontur.Diadoc's HTTP shape on loopback, and a page to play the buyer.

Never shipped. The portal's DiadocClient talks to it exactly as to Diadoc: a token by the refresh-token flow, the
seller's box, the buyer's box by participant id, PostMessage (V3) with the XML and its detached CMS signature (the
emulator refuses a signature that is not a CMS, or one that does not match the content when `openssl` is at hand),
GetMessage (V5). Its front page lists what arrived; the person playing the buyer signs a document or rejects it with
a reason. State is in memory: a restart is an empty inbox.
"""

from __future__ import annotations

import base64
import html
import secrets
import shutil
import subprocess
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from portal.documents.edo_client import EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET, EMULATOR_REFRESH_TOKEN

SELLER_BOX = "a1b2c3d4-0000-4000-8000-5e11e4b0c500"


@dataclass
class Message:
    message_id: str
    entity_id: str
    from_box: str
    to_box: str
    recipient_id: str
    custom_id: str
    file_name: str
    content: bytes
    signature: bytes
    status: str = "WaitingForRecipientSignature"
    reason: str | None = None
    rejection_id: str | None = None


@dataclass
class EdoEmulator:
    seller_participant_id: str
    messages: dict[str, Message] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    participants: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    url_map = Map(
        [
            Rule("/connect/token", endpoint="token", methods=["POST"]),
            Rule("/GetMyOrganizations", endpoint="my_organizations", methods=["GET"]),
            Rule("/GetOrganization", endpoint="organization", methods=["GET"]),
            Rule("/V3/PostMessage", endpoint="post_message", methods=["POST"]),
            Rule("/V5/GetMessage", endpoint="get_message", methods=["GET"]),
            Rule("/", endpoint="inbox", methods=["GET"]),
            Rule("/_buyer/<message_id>/content", endpoint="content", methods=["GET"]),
            Rule("/_buyer/<message_id>/sign", endpoint="sign", methods=["POST"]),
            Rule("/_buyer/<message_id>/reject", endpoint="reject", methods=["POST"]),
        ]
    )

    # --- WSGI -------------------------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        adapter = self.url_map.bind_to_environ(environ)
        try:
            endpoint, args = adapter.match()
            response = getattr(self, f"on_{endpoint}")(request, **args)
        except HTTPException as exc:
            response = exc.get_response()
        return response(environ, start_response)

    @staticmethod
    def _json(data: Any, status: int = 200) -> Response:
        import json

        return Response(json.dumps(data, ensure_ascii=False), status=status, mimetype="application/json")

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        return header.startswith("Bearer ") and header.removeprefix("Bearer ") in self.tokens

    # --- the API ----------------------------------------------------------------------------------------------

    def on_token(self, request: Request) -> Response:
        form = request.form
        if (
            form.get("grant_type") != "refresh_token"
            or form.get("client_id") != EMULATOR_CLIENT_ID
            or form.get("client_secret") != EMULATOR_CLIENT_SECRET
            or form.get("refresh_token") != EMULATOR_REFRESH_TOKEN
        ):
            return self._json({"error": "invalid_grant"}, 400)
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens.add(token)
        return self._json({"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    def on_my_organizations(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._json({"error": "unauthorized"}, 401)
        org = {"FnsParticipantId": self.seller_participant_id, "Boxes": [{"BoxIdGuid": SELLER_BOX}]}
        return self._json({"Organizations": [org]})

    def on_organization(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._json({"error": "unauthorized"}, 401)
        participant = request.args.get("fnsParticipantId", "")
        if len(participant) < 4:
            return self._json({"error": "not found"}, 404)
        with self.lock:
            self.participants.add(participant)
        box = _box_for(participant)
        return self._json({"FnsParticipantId": participant, "Boxes": [{"BoxIdGuid": box}]})

    def on_post_message(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._json({"error": "unauthorized"}, 401)
        body = request.get_json(force=True, silent=True) or {}
        if body.get("FromBoxId") != SELLER_BOX:
            return self._json({"error": "FromBoxId is not the user's box"}, 403)
        attachments = body.get("DocumentAttachments") or []
        if len(attachments) != 1:
            return self._json({"error": "one document per message in the emulator"}, 400)
        item = attachments[0]
        try:
            content = base64.b64decode(item["SignedContent"]["Content"], validate=True)
            signature = base64.b64decode(item["SignedContent"]["Signature"], validate=True)
        except (KeyError, ValueError, TypeError):
            return self._json({"error": "SignedContent must carry Content and Signature in base64"}, 400)
        problem = check_signature(content, signature)
        if problem:
            return self._json({"error": problem}, 400)
        custom_id = str(item.get("CustomDocumentId") or "")
        with self.lock:
            for message in self.messages.values():
                if custom_id and message.custom_id == custom_id:
                    return self._json(self._message_json(message))  # the same document again: the same message
            participant = next(
                (p for p in self.participants if _box_for(p) == body.get("ToBoxId")), str(body.get("ToBoxId"))
            )
            message = Message(
                message_id=str(uuid.uuid4()),
                entity_id=str(uuid.uuid4()),
                from_box=SELLER_BOX,
                to_box=str(body.get("ToBoxId")),
                recipient_id=participant,
                custom_id=custom_id,
                file_name=str(item.get("Comment") or "document.xml"),
                content=content,
                signature=signature,
            )
            self.messages[message.message_id] = message
        return self._json(self._message_json(message))

    def _message_json(self, message: Message) -> dict[str, Any]:
        entities: list[dict[str, Any]] = [
            {
                "EntityId": message.entity_id,
                "EntityType": "Attachment",
                "AttachmentType": "UniversalTransferDocument",
                "FileName": message.file_name,
                "DocumentInfo": {"RecipientResponseStatus": message.status, "CustomDocumentId": message.custom_id},
            }
        ]
        if message.rejection_id:
            entities.append(
                {
                    "EntityId": message.rejection_id,
                    "EntityType": "Attachment",
                    "AttachmentType": "SignatureRequestRejection",
                    "ParentEntityId": message.entity_id,
                    "Content": {"Data": base64.b64encode(_rejection_xml(message.reason or "")).decode()},
                }
            )
        return {
            "MessageId": message.message_id,
            "FromBoxId": message.from_box,
            "ToBoxId": message.to_box,
            "IsDelivered": True,
            "Entities": entities,
        }

    def on_get_message(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._json({"error": "unauthorized"}, 401)
        message = self.messages.get(request.args.get("messageId", ""))
        if message is None or request.args.get("boxId") != SELLER_BOX:
            return self._json({"error": "message not found"}, 404)
        return self._json(self._message_json(message))

    # --- the buyer's page -------------------------------------------------------------------------------------

    def on_inbox(self, request: Request) -> Response:
        rows = []
        titles = {
            "WaitingForRecipientSignature": "Ожидает подписи",
            "WithRecipientSignature": "Подписан",
            "RecipientSignatureRequestRejected": "Отклонён",
        }
        for m in reversed(list(self.messages.values())):
            name = html.escape(m.file_name)
            actions = ""
            if m.status == "WaitingForRecipientSignature":
                actions = (
                    f'<form method="post" action="/_buyer/{m.message_id}/sign">'
                    f'<button type="submit">Подписать {name}</button></form>'
                    f'<form method="post" action="/_buyer/{m.message_id}/reject">'
                    f'<label for="reason-{m.message_id}">Причина отказа</label> '
                    f'<input id="reason-{m.message_id}" name="reason" required maxlength="1000">'
                    f'<button type="submit">Отклонить {name}</button></form>'
                )
            elif m.reason:
                actions = f"Причина: {html.escape(m.reason)}"
            rows.append(
                f"<tr><td><a href='/_buyer/{m.message_id}/content'>{name}</a></td>"
                f"<td>{html.escape(m.recipient_id)}</td><td>{titles.get(m.status, m.status)}</td><td>{actions}</td></tr>"
            )
        body = "".join(rows) or "<tr><td colspan='4'>Входящих документов нет.</td></tr>"
        page = (
            "<!DOCTYPE html><html lang='ru'><head><meta charset='utf-8'><title>Эмулятор ЭДО: входящие покупателя"
            "</title></head><body><main><h1>Эмулятор ЭДО: входящие документы покупателя</h1>"
            "<p>Здесь вы играете покупателя: подпишите документ или отклоните его с причиной.</p>"
            "<table><thead><tr><th>Документ</th><th>Получатель</th><th>Статус</th><th>Действия</th></tr></thead>"
            f"<tbody>{body}</tbody></table></main></body></html>"
        )
        return Response(page, mimetype="text/html")

    def on_content(self, request: Request, message_id: str) -> Response:
        message = self.messages.get(message_id)
        if message is None:
            return Response("not found", status=404)
        return Response(message.content, mimetype="application/xml")

    def on_sign(self, request: Request, message_id: str) -> Response:
        with self.lock:
            message = self.messages.get(message_id)
            if message is not None and message.status == "WaitingForRecipientSignature":
                message.status = "WithRecipientSignature"
        return redirect("/", 303)

    def on_reject(self, request: Request, message_id: str) -> Response:
        reason = " ".join(request.form.get("reason", "").split())[:1000]
        if not reason:
            return Response("Укажите причину отказа.", status=400)
        with self.lock:
            message = self.messages.get(message_id)
            if message is not None and message.status == "WaitingForRecipientSignature":
                message.status = "RecipientSignatureRequestRejected"
                message.reason = reason
                message.rejection_id = str(uuid.uuid4())
        return redirect("/", 303)


def _box_for(participant: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"edo-emulator:{participant}"))


def _rejection_xml(reason: str) -> bytes:
    text = html.escape(reason, quote=True)
    return f'<?xml version="1.0" encoding="utf-8"?><Файл><Документ><УведУточ ТекстУведУточ="{text}"/></Документ></Файл>'.encode()


def check_signature(content: bytes, signature: bytes) -> str | None:
    """None when the signature is a CMS over `content`; else what is wrong (the operator refuses the message)."""
    from cryptography.hazmat.primitives.serialization import pkcs7

    try:
        pkcs7.load_der_pkcs7_certificates(signature)
    except ValueError:
        return "Signature is not a DER-encoded CMS (PKCS#7)"
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    with tempfile.TemporaryDirectory() as folder:
        data, sig = Path(folder) / "data", Path(folder) / "sig"
        data.write_bytes(content)
        sig.write_bytes(signature)
        result = subprocess.run(
            [openssl, "cms", "-verify", "-binary", "-noverify", "-inform", "DER", "-in", sig, "-content", data],
            capture_output=True,
            check=False,
        )
    return None if result.returncode == 0 else "Signature does not match the document"


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def serve(emulator: EdoEmulator, host: str = "127.0.0.1", port: int = 0) -> BaseWSGIServer:
    """Serve in a daemon thread; returns the server (its `server_port`, `shutdown()`)."""
    server = make_server(host, port, emulator, threaded=True, request_handler=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="edo-emulator", daemon=True).start()
    return server
