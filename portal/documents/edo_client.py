"""ЭДО behind two small interfaces: a signer (detached CMS) and an operator client (Kontur.Diadoc's HTTP API).

The signer's default is a local test key (RSA, a self-signed certificate kept in the instance folder): the CMS is real
and checkable, but it is no КЭП. Production configures `EDO_SIGNER=service`: the vendor's signing service (e.g. a
КриптоПро DSS or a ГОСТ HSM behind a small HTTP endpoint) returns the detached CMS made with the director's КЭП.

The operator client speaks Diadoc's public API: an OpenID Connect token by the refresh-token flow, the seller's box
(GetMyOrganizations, matched by the seller's participant id), the buyer's box by participant id (GetOrganization),
PostMessage (V3) with the document and its signature, and GetMessage (V5) to read the docflow's state. The local ЭДО
emulator (devtools/edo_emulator.py) answers the same requests, so one client serves both.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from xml.etree import ElementTree

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

HTTP_TIMEOUT = 30
# The local emulator's fixed demo credentials (it runs on loopback only; nothing here is a secret).
EMULATOR_CLIENT_ID = "portal-demo"
EMULATOR_CLIENT_SECRET = "demo-secret"
EMULATOR_REFRESH_TOKEN = "demo-refresh-token"


class EdoTransportError(RuntimeError):
    """The operator or the signing service did not do what was asked; the text goes to the outbox row and to staff."""


# --- signing ------------------------------------------------------------------------------------------------------


class Signer(Protocol):
    def sign(self, data: bytes) -> bytes:
        """A detached CMS (PKCS#7) signature of `data`, DER-encoded."""
        ...


class LocalTestSigner:
    """Signs with a key made once in the instance folder: a real CMS for the emulator and tests, not a КЭП."""

    def __init__(self, folder: Path | str, subject: str = "Тестовая подпись продавца") -> None:
        self.folder = Path(folder)
        self.subject = subject

    def _material(self) -> tuple[Any, Any]:
        key_path, cert_path = self.folder / "edo_test_key.pem", self.folder / "edo_test_cert.pem"
        if key_path.exists() and cert_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            return key, x509.load_pem_x509_certificate(cert_path.read_bytes())
        self.folder.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.subject)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .sign(key, hashes.SHA256())
        )
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        key_path.chmod(0o600)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return key, cert

    def sign(self, data: bytes) -> bytes:
        key, cert = self._material()
        return (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(data)
            .add_signer(cert, key, hashes.SHA256())
            .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary])
        )


class SigningServiceSigner:
    """The vendor's signing service: POST the bytes, get the detached CMS made with the КЭП (ГОСТ Р 34.10-2012)."""

    def __init__(self, url: str, token: str, session: requests.Session | None = None) -> None:
        self.url, self.token = url, token
        self.session = session or requests.Session()

    def sign(self, data: bytes) -> bytes:
        try:
            resp = self.session.post(
                self.url,
                json={"content": base64.b64encode(data).decode(), "detached": True},
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=HTTP_TIMEOUT,
            )
        except requests.RequestException as exc:
            raise EdoTransportError(f"Сервис подписи недоступен: {exc}") from None
        if resp.status_code != 200:
            raise EdoTransportError(f"Сервис подписи ответил {resp.status_code}: {resp.text[:300]}")
        return base64.b64decode(resp.json()["signature"])


def signer_from_config(config: Mapping[str, Any], instance_path: str) -> Signer:
    override = config.get("EDO_SIGNER_OBJECT")
    if override is not None:
        return override
    if config.get("EDO_SIGNER") == "service":
        return SigningServiceSigner(
            str(config.get("EDO_SIGNING_URL") or ""), str(config.get("EDO_SIGNING_TOKEN") or "")
        )
    return LocalTestSigner(Path(instance_path) / "edo")


# --- the operator ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Posted:
    message_id: str
    entity_id: str


@dataclass(frozen=True)
class DocflowState:
    status: str  # "sent" | "delivered" | "signed" | "rejected" (EdoStatus values)
    reason: str | None = None  # the buyer's reason for a rejection


class EdoClient(Protocol):
    def post_document(
        self, *, recipient_id: str, type_named_id: str, file_name: str, content: bytes, signature: bytes, custom_id: str
    ) -> Posted: ...

    def docflow_state(self, *, message_id: str, entity_id: str) -> DocflowState: ...


_TEXT_TAG = re.compile(r"ТекстУведУточ|Text|Comment", re.IGNORECASE)


def rejection_text(data: bytes) -> str:
    """The buyer's reason from a rejection (уведомление об уточнении, XML) or, failing XML, the text itself."""
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError:
        return data.decode("utf-8", "replace").strip()
    for element in root.iter():
        if _TEXT_TAG.search(element.tag) and (element.text or "").strip():
            return element.text.strip()
        for name, value in element.attrib.items():
            if _TEXT_TAG.search(name) and value.strip():
                return value.strip()
    return "".join(root.itertext()).strip()


class DiadocClient:
    """Kontur.Diadoc's HTTP API (JSON), as used to send a signed УПД and follow it; see the module docstring."""

    def __init__(
        self,
        *,
        api_url: str,
        auth_url: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        seller_participant_id: str,
        session: requests.Session | None = None,
    ) -> None:
        self.api_url, self.auth_url = api_url.rstrip("/"), auth_url.rstrip("/")
        self.client_id, self.client_secret, self.refresh_token = client_id, client_secret, refresh_token
        self.seller_participant_id = seller_participant_id
        self.session = session or requests.Session()
        self._token: str | None = None
        self._box: str | None = None

    # The token and the seller's box are kept per client object only (one sweep): nothing another server needs.
    def _authenticate(self) -> str:
        try:
            resp = self.session.post(
                f"{self.auth_url}/connect/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": self.refresh_token,
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                },
                timeout=HTTP_TIMEOUT,
            )
        except requests.RequestException as exc:
            raise EdoTransportError(f"Оператор ЭДО недоступен: {exc}") from None
        if resp.status_code != 200:
            raise EdoTransportError(f"Оператор ЭДО не выдал токен ({resp.status_code}): {resp.text[:300]}")
        self._token = str(resp.json()["access_token"])
        return self._token

    def _call(self, method: str, path: str, *, retry: bool = True, **kw: Any) -> Any:
        token = self._token or self._authenticate()
        try:
            resp = self.session.request(
                method,
                f"{self.api_url}{path}",
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                timeout=HTTP_TIMEOUT,
                **kw,
            )
        except requests.RequestException as exc:
            raise EdoTransportError(f"Оператор ЭДО недоступен: {exc}") from None
        if resp.status_code == 401 and retry:
            self._token = None  # expired: one fresh token, then the error stands
            return self._call(method, path, retry=False, **kw)
        if resp.status_code != 200:
            raise EdoTransportError(f"Оператор ЭДО ответил {resp.status_code} на {path}: {resp.text[:300]}")
        return resp.json()

    def _box_of(self, organization: Mapping[str, Any]) -> str:
        boxes = organization.get("Boxes") or []
        if not boxes:
            raise EdoTransportError(f"У организации {organization.get('FnsParticipantId')} нет ящика в ЭДО")
        return str(boxes[0].get("BoxIdGuid") or boxes[0]["BoxId"])

    def seller_box(self) -> str:
        if self._box is None:
            organizations = self._call("GET", "/GetMyOrganizations").get("Organizations") or []
            mine = [o for o in organizations if o.get("FnsParticipantId") == self.seller_participant_id]
            if not mine:
                raise EdoTransportError(
                    f"Ящик продавца {self.seller_participant_id} не найден среди организаций пользователя API"
                )
            self._box = self._box_of(mine[0])
        return self._box

    def recipient_box(self, participant_id: str) -> str:
        return self._box_of(self._call("GET", "/GetOrganization", params={"fnsParticipantId": participant_id}))

    def post_document(
        self, *, recipient_id: str, type_named_id: str, file_name: str, content: bytes, signature: bytes, custom_id: str
    ) -> Posted:
        message = {
            "FromBoxId": self.seller_box(),
            "ToBoxId": self.recipient_box(recipient_id),
            "DocumentAttachments": [
                {
                    "SignedContent": {
                        "Content": base64.b64encode(content).decode(),
                        "Signature": base64.b64encode(signature).decode(),
                    },
                    "TypeNamedId": type_named_id,
                    "NeedRecipientSignature": True,
                    # Diadoc refuses a second message with the same CustomDocumentId from the box: a retry after
                    # a lost answer cannot post the document twice.
                    "CustomDocumentId": custom_id,
                    "Comment": file_name,
                }
            ],
        }
        answer = self._call("POST", "/V3/PostMessage", json=message)
        documents = [e for e in answer.get("Entities") or [] if e.get("EntityType") == "Attachment"]
        if not answer.get("MessageId") or not documents:
            raise EdoTransportError("Оператор ЭДО не вернул идентификатор сообщения")
        return Posted(str(answer["MessageId"]), str(documents[0]["EntityId"]))

    def docflow_state(self, *, message_id: str, entity_id: str) -> DocflowState:
        message = self._call("GET", "/V5/GetMessage", params={"boxId": self.seller_box(), "messageId": message_id})
        entities = message.get("Entities") or []
        document = next((e for e in entities if e.get("EntityId") == entity_id), None)
        if document is None:
            raise EdoTransportError(f"В сообщении {message_id} нет документа {entity_id}")
        status = (document.get("DocumentInfo") or {}).get("RecipientResponseStatus")
        if status == "WithRecipientSignature":
            return DocflowState("signed")
        if status == "RecipientSignatureRequestRejected":
            rejection = next(
                (
                    e
                    for e in entities
                    if e.get("ParentEntityId") == entity_id and e.get("AttachmentType") == "SignatureRequestRejection"
                ),
                None,
            )
            data = base64.b64decode(((rejection or {}).get("Content") or {}).get("Data") or "")
            return DocflowState("rejected", rejection_text(data) if data else "Причина не указана")
        if message.get("IsDelivered"):
            return DocflowState("delivered")
        return DocflowState("sent")


def client_from_config(config: Mapping[str, Any], seller_participant_id: str) -> EdoClient | None:
    """The configured operator, or None when ЭДО is off."""
    override = config.get("EDO_CLIENT_OBJECT")
    if override is not None:
        return override
    backend = config.get("EDO_BACKEND", "emulator")
    if backend == "off":
        return None
    if backend == "emulator":
        url = str(config.get("EDO_EMULATOR_URL") or "http://127.0.0.1:5056")
        return DiadocClient(
            api_url=url,
            auth_url=url,
            client_id=EMULATOR_CLIENT_ID,
            client_secret=EMULATOR_CLIENT_SECRET,
            refresh_token=EMULATOR_REFRESH_TOKEN,
            seller_participant_id=seller_participant_id,
        )
    return DiadocClient(
        api_url=str(config.get("DIADOC_API_URL") or ""),
        auth_url=str(config.get("DIADOC_AUTH_URL") or ""),
        client_id=str(config.get("DIADOC_CLIENT_ID") or ""),
        client_secret=str(config.get("DIADOC_CLIENT_SECRET") or ""),
        refresh_token=str(config.get("DIADOC_REFRESH_TOKEN") or ""),
        seller_participant_id=seller_participant_id,
    )
