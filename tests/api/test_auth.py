"""API keys, roles and TLS: every call is authenticated unless development mode is on."""

from __future__ import annotations

import datetime
import ipaddress

import grpc
import pytest

from hybridsearch.engine.api_keys import ApiKeyStore
from hybridsearch.v1 import hybridsearch_pb2 as pb
from tests.conftest import status_of


@pytest.fixture
def keyed(start_server, tmp_path):
    """A server in api_key mode with one operator key made on the host (bootstrap)."""
    running = start_server(tmp_path / "data", auth_mode="api_key")
    _, admin = ApiKeyStore(running.settings.state_path).create("ops", "operator", "bootstrap")
    return running, admin


def test_calls_without_a_key_are_unauthenticated(keyed):
    running, _ = keyed
    code, details = status_of(lambda: running.client(tenant="acme").list_collections())
    assert code == grpc.StatusCode.UNAUTHENTICATED and "authorization" in details


def test_invalid_and_malformed_keys_are_unauthenticated(keyed):
    running, admin = keyed
    for key in ("nonsense", "hsk_abc_def", admin[:-2] + "xx", "hsk__"):
        code, details = status_of(lambda key=key: running.client(tenant=None, api_key=key).list_collections())
        assert code == grpc.StatusCode.UNAUTHENTICATED and "API key" in details


def test_roles_gate_writes_and_admin_calls(keyed):
    running, admin = keyed
    admin_client = running.client(tenant=None, api_key=admin)
    admin_client.create_collection("docs")
    made = {}
    for role in (pb.SEARCH, pb.WRITE):
        reply = admin_client.admin.CreateApiKey(
            pb.CreateApiKeyRequest(tenant="acme", role=role), metadata=admin_client.metadata
        )
        assert reply.secret.startswith("hsk_") and reply.key.tenant == "acme"
        made[role] = reply.secret
    writer = running.client(tenant=None, api_key=made[pb.WRITE])
    reader = running.client(tenant=None, api_key=made[pb.SEARCH])
    writer.upsert("docs", [{"id": "1", "text": "cancer cells"}])
    assert reader.search("docs", "cancer", top_k=1).hits[0].id == "1"
    code, details = status_of(lambda: reader.upsert("docs", [{"id": "2", "text": "x"}]))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "write" in details
    code, _ = status_of(lambda: writer.create_collection("other"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _ = status_of(lambda: writer.set_budget("acme", max_depth=10))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    # the admin key's tenant ("ops") sees none of acme's documents
    assert admin_client.get("docs", ["1"]) == []


def test_the_key_decides_the_tenant_and_a_forged_header_is_refused(keyed):
    running, admin = keyed
    admin_client = running.client(tenant=None, api_key=admin)
    admin_client.create_collection("docs")
    secret = admin_client.admin.CreateApiKey(
        pb.CreateApiKeyRequest(tenant="acme", role=pb.WRITE), metadata=admin_client.metadata
    ).secret
    running.client(tenant=None, api_key=secret).upsert("docs", [{"id": "a", "text": "cancer cells"}])
    forged = running.client(tenant="ops", api_key=secret)
    code, _ = status_of(lambda: forged.search("docs", "cancer", top_k=1))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    honest = running.client(tenant="acme", api_key=secret)
    assert honest.search("docs", "cancer", top_k=1).hits[0].id == "a"


def test_revoked_keys_stop_working_and_keys_are_stored_hashed(keyed):
    running, admin = keyed
    admin_client = running.client(tenant=None, api_key=admin)
    reply = admin_client.admin.CreateApiKey(
        pb.CreateApiKeyRequest(tenant="acme", role=pb.SEARCH), metadata=admin_client.metadata
    )
    user = running.client(tenant=None, api_key=reply.secret)
    user.list_collections()
    assert admin_client.admin.RevokeApiKey(
        pb.RevokeApiKeyRequest(key_id=reply.key.key_id), metadata=admin_client.metadata
    ).revoked
    code, _ = status_of(lambda: user.list_collections())
    assert code == grpc.StatusCode.UNAUTHENTICATED
    listed = admin_client.admin.ListApiKeys(pb.ListApiKeysRequest(tenant="acme"), metadata=admin_client.metadata).keys
    assert [k.revoked for k in listed] == [True]
    raw = (
        running.settings.state_path.read_bytes()
        + (running.settings.state_path.parent / "state.sqlite3-wal").read_bytes()
    )
    assert reply.secret.encode() not in raw and reply.secret.split("_", 2)[2].encode() not in raw


def test_create_api_key_rejects_bad_tenant_and_role(keyed):
    running, admin = keyed
    c = running.client(tenant=None, api_key=admin)
    code, details = status_of(
        lambda: c.admin.CreateApiKey(pb.CreateApiKeyRequest(tenant="no spaces!", role=pb.SEARCH), metadata=c.metadata)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "tenant" in details
    # An empty tenant is the caller's own.
    assert c.admin.CreateApiKey(pb.CreateApiKeyRequest(role=pb.SEARCH), metadata=c.metadata).key.tenant == "ops"
    code, details = status_of(lambda: c.admin.CreateApiKey(pb.CreateApiKeyRequest(tenant="acme"), metadata=c.metadata))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "role" in details


# ---------------------------------------------------------------- roles with scope (issue 15)

ROLE_OF = {"search": pb.SEARCH, "write": pb.WRITE, "tenant-admin": pb.TENANT_ADMIN, "operator": pb.OPERATOR}
DENIED = grpc.StatusCode.PERMISSION_DENIED


def _outcome(call):
    try:
        call()
        return "ok"
    except grpc.RpcError as exc:
        return exc.code()


@pytest.mark.parametrize("role", ["search", "write", "tenant-admin", "operator"])
def test_every_tenant_admin_call_acts_on_the_callers_tenant_only_unless_operator(keyed, role):
    """Issue 15, finding 1: an admin key of tenant A administered tenant B."""
    running, operator = keyed
    store = ApiKeyStore(running.settings.state_path)
    op = running.client(tenant=None, api_key=operator)
    op.create_collection("shared")
    b_key, b_secret = store.create("b", "write", "b's writer")
    running.client(tenant=None, api_key=b_secret).upsert("shared", [{"id": "b1", "text": "tenant b's document"}])
    _, secret = store.create("a", role, "the caller")
    c = running.client(tenant=None, api_key=secret)
    md, admin = c.metadata, c.admin
    is_op = role == "operator"
    tenant_admin_or_more = role in ("tenant-admin", "operator")
    expect_own = "ok" if tenant_admin_or_more else DENIED
    expect_other = "ok" if is_op else DENIED
    for tenant, expected in (("a", expect_own), ("", expect_own), ("b", expect_other)):
        assert (
            _outcome(
                lambda tenant=tenant: admin.CreateApiKey(
                    pb.CreateApiKeyRequest(tenant=tenant, role=pb.SEARCH), metadata=md
                )
            )
            == expected
        ), (role, tenant)
        assert (
            _outcome(lambda tenant=tenant: admin.ListApiKeys(pb.ListApiKeysRequest(tenant=tenant), metadata=md))
            == expected
        ), (role, tenant)
        assert (
            _outcome(lambda tenant=tenant: admin.GetBudget(pb.GetBudgetRequest(tenant=tenant), metadata=md)) == expected
        ), (role, tenant)
    # Budgets are set, listed and deleted by operators only: no tenant raises its own.
    for tenant in ("a", "b"):
        assert _outcome(lambda tenant=tenant: c.set_budget(tenant, max_depth=10)) == ("ok" if is_op else DENIED)
        assert _outcome(
            lambda tenant=tenant: admin.DeleteBudget(pb.DeleteBudgetRequest(tenant=tenant), metadata=md)
        ) == ("ok" if is_op else DENIED)
    assert _outcome(lambda: admin.ListBudgets(pb.ListBudgetsRequest(), metadata=md)) == ("ok" if is_op else DENIED)
    # No key above the caller's own role; operator keys only from an operator.
    assert _outcome(lambda: admin.CreateApiKey(pb.CreateApiKeyRequest(tenant="a", role=pb.OPERATOR), metadata=md)) == (
        "ok" if is_op else DENIED
    )
    if tenant_admin_or_more and not is_op:
        listed = admin.ListApiKeys(pb.ListApiKeysRequest(), metadata=md).keys
        assert listed and {k.tenant for k in listed} == {"a"}
        # Another tenant's key reads as unknown, and keeps working.
        assert not admin.RevokeApiKey(pb.RevokeApiKeyRequest(key_id=b_key.key_id), metadata=md).revoked
        assert running.client(tenant=None, api_key=b_secret).get("shared", ["b1"])
    # A collection holds every tenant's documents: only an operator drops it.
    assert _outcome(lambda: c.drop_collection("shared")) == ("ok" if is_op else DENIED)
    if not is_op:
        assert running.client(tenant=None, api_key=b_secret).get("shared", ["b1"])
    assert _outcome(lambda: c.create_collection(f"made_by_{role.replace('-', '_')}")) == (
        "ok" if tenant_admin_or_more else DENIED
    )


def test_old_admin_keys_become_tenant_admins_of_their_own_tenant(tmp_path, start_server):
    import sqlite3

    running = start_server(tmp_path / "data", auth_mode="api_key")
    store = ApiKeyStore(running.settings.state_path)
    record, secret = store.create("a", "write", "to be an old admin key")
    with sqlite3.connect(str(running.settings.state_path)) as conn:  # as an earlier release wrote it
        conn.execute("UPDATE api_keys SET role = 'admin' WHERE key_id = ?", (record.key_id,))
    migrated = ApiKeyStore(running.settings.state_path)  # what a restart does
    assert migrated.get(record.key_id).role == "tenant-admin"
    c = running.client(tenant=None, api_key=secret)
    running.server.keys._cache.clear()  # the running server re-reads the row
    code, details = status_of(lambda: c.admin.ListApiKeys(pb.ListApiKeysRequest(tenant="b"), metadata=c.metadata))
    assert code == DENIED and "own tenant 'a'" in details
    assert [k.role for k in c.admin.ListApiKeys(pb.ListApiKeysRequest(), metadata=c.metadata).keys] == [pb.TENANT_ADMIN]


def _self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def test_tls_serves_with_a_self_signed_certificate_and_refuses_plaintext(start_server, tmp_path):
    cert, key = _self_signed(tmp_path)
    running = start_server(
        tmp_path / "data",
        server={"host": "127.0.0.1", "port": 0, "grace_s": 1, "tls_cert_file": str(cert), "tls_key_file": str(key)},
    )
    from hybridsearch.engine.client import HybridSearchClient

    secure = HybridSearchClient(f"localhost:{running.port}", tenant="acme", root_certificates=cert.read_bytes())
    secure.create_collection("docs")
    assert [c.name for c in secure.list_collections()] == ["docs"]
    secure.close()
    plain = running.client("acme", timeout=3)
    code, _ = status_of(lambda: plain.list_collections())
    assert code == grpc.StatusCode.UNAVAILABLE
