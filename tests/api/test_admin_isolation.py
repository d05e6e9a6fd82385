"""Issue 15: no cross-tenant effect anywhere on the admin surface.

Every TenantAdmin RPC (and HybridSearch's CreateCollection / DropCollection) x every role
(search, write, tenant-admin, operator) x a set of targets: the caller's own tenant (named,
or by the empty field), another tenant, a tenant that does not exist yet, and hostile
spellings of the other tenant's name. For every case we assert

* the status the servicer defines (engine/servicer.py), and that an error names its field;
* that nothing outside the caller's tenant moved -- tenant b's keys (ids, roles, revoked
  flags, straight from the key table), every budget row (straight from the state database) and
  b's budget as the service answers it, the list of collections, b's documents (Get, count,
  Search with b's own keys) -- except for the one change an operator asked for;
* that b's keys still authenticate: the snapshot itself is taken with b's search, write and
  tenant-admin keys, so a key lost to the call fails the "after" snapshot.

One server for the whole module (building one costs seconds, a case costs milliseconds):
each case takes its own "before" snapshot, so cases do not depend on their order, and the
autouse fixture puts the two budgets the cases read back in place.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass

import grpc
import pytest

from hybridsearch.engine.api_keys import ROLE_RANK, ApiKeyRecord, ApiKeyStore
from hybridsearch.engine.budget_store import BudgetStore
from hybridsearch.rerank.budgets import RerankBudget
from hybridsearch.v1 import hybridsearch_pb2 as pb
from tests.conftest import RunningServer, make_settings

A, B = "a", "b"  # a: every caller under test; b: the tenant that must not be touched
OPS = "ops"  # the bootstrap operator's tenant: sets up and reads the world, never a caller
ROLES = ("search", "write", "tenant-admin", "operator")
ROLE_ENUM = {"search": pb.SEARCH, "write": pb.WRITE, "tenant-admin": pb.TENANT_ADMIN, "operator": pb.OPERATOR}
SHARED = "shared"  # the collection holding a's and b's documents
B_DOCS = [{"id": "b1", "text": "tenant b keeps its ledger here"}, {"id": "b2", "text": "tenant b quarterly report"}]
# Restrictive on purpose, so that "raising one's own budget" is a visible change.
BUDGET_A = dict(max_depth=5, min_depth=0, cost_per_minute=100.0, default_mode="off")
BUDGET_B = dict(max_depth=7, min_depth=1, cost_per_minute=1234.0, default_mode="off")
OK = grpc.StatusCode.OK
DENIED = grpc.StatusCode.PERMISSION_DENIED
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@dataclass
class World:
    running: RunningServer
    store: ApiKeyStore  # the test's own handles on the state: they read the rows, no cache
    budgets: BudgetStore
    ops: object  # HybridSearchClient of the bootstrap operator (tenant "ops")
    secrets: dict[str, str]  # role -> key of tenant a
    b: dict[str, object]  # role -> client of tenant b (search, write, tenant-admin)
    baseline_budgets: dict[str, dict]

    def caller(self, role: str, **kw):
        return self.running.client(tenant=None, api_key=self.secrets[role], **kw)


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_m3_dir, tiny_reranker_dir):
    # Like conftest's start_server, but once per module and in api_key mode; the reranker is
    # on because budgets live in the rerank stage (without it they are FAILED_PRECONDITION).
    running = RunningServer(
        make_settings(tmp_path_factory.mktemp("admin-isolation"), tiny_m3_dir, tiny_reranker_dir, auth_mode="api_key")
    )
    store = ApiKeyStore(running.settings.state_path)
    budgets = BudgetStore(running.settings.state_path, RerankBudget())
    try:
        _, boot = store.create(OPS, "operator", "bootstrap")
        ops = running.client(tenant=None, api_key=boot)
        ops.create_collection(SHARED)
        secrets = {role: store.create(A, role, f"a's {role} caller")[1] for role in ROLES}
        b = {}
        for role in ("search", "write", "tenant-admin"):
            b[role] = running.client(tenant=None, api_key=store.create(B, role, f"b's {role} key")[1])
        b["write"].upsert(SHARED, B_DOCS)
        running.client(tenant=None, api_key=secrets["write"]).upsert(SHARED, [{"id": "a1", "text": "tenant a ledger"}])
        ops.set_budget(A, **BUDGET_A)
        ops.set_budget(B, **BUDGET_B)
        w = World(running, store, budgets, ops, secrets, b, {})
        w.baseline_budgets = {t: v for t, v in budget_rows(w).items() if t in (A, B)}
        yield w
    finally:
        running.stop()
        for handle in (store, budgets):  # close() where the store has one (the state database's)
            getattr(handle, "close", lambda: None)()


@pytest.fixture(autouse=True)
def _baseline_budgets(world):
    """Operator cases set or delete a's and b's budgets; put them back before each case."""
    rows = budget_rows(world)
    for tenant, settings in ((A, BUDGET_A), (B, BUDGET_B)):
        if rows.get(tenant) != world.baseline_budgets[tenant]:
            world.ops.set_budget(tenant, **settings)


# ---------------------------------------------------------------- the snapshot


def budget_rows(w: World) -> dict[str, dict]:
    """Every budget row, read from the state database (BudgetStore.list reads the rows, not
    the service's cache)."""
    return {b.tenant: asdict(b) for b in w.budgets.list()}


def snapshot(w: World) -> dict:
    """Everything outside tenant a that an admin call could touch (plus every budget: no
    non-operator may change any budget, its own included). Dict parts are compared row by
    row, so a diff names the row."""
    keys = {k.key_id: (k.tenant, k.role, k.revoked, k.description) for k in w.store.list() if k.tenant != A}
    b_search, b_write, b_admin = w.b["search"], w.b["write"], w.b["tenant-admin"]
    return {
        "keys": keys,
        "budgets": budget_rows(w),
        "b_budget_served": w.ops.get_budget(B),
        "collections": sorted(c.name for c in w.ops.list_collections()),
        # b's own keys read b's state: each of them must still authenticate.
        "b_docs": [(d.id, d.text) for d in b_search.get(SHARED, ["b1", "b2"])],
        "b_hits": sorted(h.id for h in b_search.search(SHARED, "tenant ledger report", top_k=5).hits),
        "b_count": b_write.describe_collection(SHARED).tenant_document_count,
        "b_listed": sorted(
            (k.key_id, k.role, k.revoked)
            for k in b_admin.admin.ListApiKeys(pb.ListApiKeysRequest(), metadata=b_admin.metadata).keys
        ),
    }


def changes(before: dict, after: dict) -> set[tuple]:
    out = set()
    for part, old in before.items():
        new = after[part]
        if isinstance(old, dict):
            out |= {(part, row) for row in old.keys() | new.keys() if old.get(row) != new.get(row)}
        elif old != new:
            out.add((part,))
    return out


def test_the_snapshot_sees_b_intact(world):
    """The baseline every case compares against: b's documents, keys and budget are there."""
    s = snapshot(world)
    assert s["b_docs"] == [(d["id"], d["text"]) for d in B_DOCS] and s["b_count"] == 2
    assert s["b_hits"] == ["b1", "b2"]
    assert {role for _, role, revoked in s["b_listed"] if not revoked} >= {pb.SEARCH, pb.WRITE, pb.TENANT_ADMIN}
    assert s["b_budget_served"].max_depth == BUDGET_B["max_depth"] and s["b_budget_served"].tenant == B
    assert SHARED in s["collections"]


# ---------------------------------------------------------------- helpers


def attempt(call) -> tuple[grpc.StatusCode, object]:
    """(OK, reply) or (status code, details)."""
    try:
        return OK, call()
    except grpc.RpcError as exc:
        return exc.code(), exc.details()


def assert_refused(outcome, code: grpc.StatusCode, *, field: str | None = None, needs: str | None = None) -> None:
    got, details = outcome
    assert got == code, f"expected {code.name}, got {got.name}: {details}"
    if field is not None:  # the service's errors read "<field>: <what is wrong>"
        assert details.startswith(f"{field}:"), details
    if needs is not None:  # a role too low for the call names the role it needs
        assert f"the call needs {needs!r}" in details, details


def fresh(prefix: str = "fresh") -> str:
    """A name nothing has used yet (valid as a tenant and as a collection name)."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def works(w: World, secret: str) -> bool:
    return attempt(lambda: w.running.client(tenant=None, api_key=secret).list_collections())[0] == OK


# ---------------------------------------------------------------- tenant-field RPCs

# Targets of the calls that name a tenant. None: a tenant that does not exist yet (made
# unique per case). The hostile ones are spellings of b (or a) that must never reach b.
TENANT_TARGETS = {
    "own": A,
    "own-by-empty": "",
    "other": B,
    "not-yet-existing": None,
    "other-uppercase": "B",  # a valid, *different* tenant: acting on it must not touch b
    "own-uppercase": "A",  # likewise not the caller's own tenant
    "other-trailing-space": "b ",
    "other-zero-width-space": "b\u200b",
    "other-path": "../b",
    "other-sql": "b;DROP",
    "other-nul": "b\x00",
    "own-trailing-space": "a ",
}
VALID = {A, B, "A", "B"}


def tenant_rpc(c, rpc: str, tenant: str):
    md = c.metadata
    if rpc == "CreateApiKey":
        return c.admin.CreateApiKey(
            pb.CreateApiKeyRequest(tenant=tenant, role=pb.SEARCH, description="matrix"), metadata=md
        )
    if rpc == "ListApiKeys":
        return c.admin.ListApiKeys(pb.ListApiKeysRequest(tenant=tenant), metadata=md)
    if rpc == "GetBudget":
        return c.admin.GetBudget(pb.GetBudgetRequest(tenant=tenant), metadata=md)
    if rpc == "SetBudget":
        # The most generous budget the server allows: for the caller's own tenant, a raise.
        budget = pb.RerankBudget(tenant=tenant, max_depth=200, cost_per_minute=0.0, default_mode=pb.AUTO)
        return c.admin.SetBudget(pb.SetBudgetRequest(budget=budget), metadata=md)
    if rpc == "DeleteBudget":  # for a restricted tenant, deleting its budget is a raise too
        return c.admin.DeleteBudget(pb.DeleteBudgetRequest(tenant=tenant), metadata=md)
    raise AssertionError(rpc)


def expected_tenant_outcome(rpc: str, role: str, tenant: str, valid: bool):
    """What engine/servicer.py defines: (code, field, needs)."""
    if rpc in ("SetBudget", "DeleteBudget"):
        # Operators only: no tenant sets (raises) or deletes (lifts) its own budget.
        if role != "operator":
            return DENIED, None, "operator"
        if not valid:
            return INVALID, "budget.tenant" if rpc == "SetBudget" else "tenant", None
        return OK, None, None
    if ROLE_RANK[role] < ROLE_RANK["tenant-admin"]:
        return DENIED, None, "tenant-admin"
    if tenant and not valid:
        return INVALID, "tenant", None
    if (tenant or A) != A and role != "operator":
        return DENIED, "tenant", None
    return OK, None, None


@pytest.mark.parametrize("target", list(TENANT_TARGETS))
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("rpc", ["CreateApiKey", "ListApiKeys", "GetBudget", "SetBudget", "DeleteBudget"])
def test_tenant_field_calls_act_on_the_callers_tenant_only_unless_operator(world, rpc, role, target):
    w = world
    tenant = TENANT_TARGETS[target]
    valid = tenant is None or tenant in VALID
    if tenant is None:
        tenant = fresh()
    effective = tenant or A
    code, field, needs = expected_tenant_outcome(rpc, role, tenant, valid)
    c = w.caller(role)
    a_keys_before = {k.key_id for k in w.store.list(A)}
    before = snapshot(w)

    outcome = attempt(lambda: tenant_rpc(c, rpc, tenant))

    after = snapshot(w)
    if code != OK:
        assert_refused(outcome, code, field=field, needs=needs)
        assert changes(before, after) == set()
        assert {k.key_id for k in w.store.list(A)} == a_keys_before
        if target == "not-yet-existing":  # a refused call leaves no trace of the new tenant
            assert w.store.list(tenant) == [] and tenant not in after["budgets"]
        return
    assert outcome[0] == OK, outcome
    reply = outcome[1]
    expected = set()  # what an operator's call on another tenant is allowed to change
    if rpc == "CreateApiKey":
        made = w.store.get(reply.key.key_id)
        assert reply.key.tenant == effective and made.tenant == effective and made.role == "search"
        assert works(w, reply.secret)
        if effective != A:
            expected = {("keys", made.key_id)} | ({("b_listed",)} if effective == B else set())
    elif rpc == "ListApiKeys":
        listed = [(k.key_id, k.tenant) for k in reply.keys]
        if role == "operator" and not tenant:  # an operator's empty tenant: every tenant's keys
            assert sorted(listed) == sorted((k.key_id, k.tenant) for k in w.store.list())
        else:
            assert sorted(listed) == sorted((k.key_id, k.tenant) for k in w.store.list(effective))
        if role != "operator":  # never another tenant's rows
            assert {t for _, t in listed} == {A}
    elif rpc == "GetBudget":
        if effective == A:
            assert (reply.tenant, reply.max_depth) == (A, BUDGET_A["max_depth"])
        elif effective == B:
            assert (reply.tenant, reply.max_depth) == (B, BUDGET_B["max_depth"])
        else:  # "B", "A", a new tenant: no budget of their own, the default (tenant empty)
            assert reply.tenant == "" and reply.max_depth != BUDGET_B["max_depth"]
    elif rpc == "SetBudget":
        assert reply.tenant == tenant and after["budgets"][tenant]["max_depth"] == 200
        expected = {("budgets", tenant)} | ({("b_budget_served",)} if tenant == B else set())
    elif rpc == "DeleteBudget":
        assert reply.deleted == (tenant in before["budgets"])
        if reply.deleted:
            expected = {("budgets", tenant)} | ({("b_budget_served",)} if tenant == B else set())
    assert role == "operator" or expected == set()
    assert changes(before, after) == expected


def test_list_budgets_is_for_operators_only(world):
    for role in ROLES:
        c = world.caller(role)
        before = snapshot(world)
        outcome = attempt(lambda c=c: c.list_budgets())
        assert changes(before, snapshot(world)) == set()
        if role != "operator":  # a non-operator sees no budget rows at all, not even filtered ones
            assert_refused(outcome, DENIED, needs="operator")
            continue
        assert outcome[0] == OK
        assert {b.tenant for b in outcome[1].budgets} == set(budget_rows(world)) >= {A, B}


# ---------------------------------------------------------------- RevokeApiKey

# Victims are made per case (a revoke must never take a key another case relies on).
# "own-*": keys of a; "other-*": keys of b; "ops-operator": the operator tenant's.
REVOKE_TARGETS = (
    "own-search",
    "own-tenant-admin",
    "own-operator",
    "other-write",
    "other-tenant-admin",
    "ops-operator",
    "unknown",
    "empty",
    "other-id-uppercase",
    "other-id-trailing-space",
    "other-id-zero-width-space",
    "sql",
    "percent",
)


def _victim(w: World, target: str) -> tuple[ApiKeyRecord, str]:
    kind, _, role = target.partition("-")
    if kind == "own":
        return w.store.create(A, role, "victim")
    if kind == "ops":
        return w.store.create(OPS, "operator", "victim")
    while True:  # b's write key, or the key a hostile id is a spelling of
        record, secret = w.store.create(B, role if target == "other-tenant-admin" else "write", "victim")
        if record.key_id.upper() != record.key_id:  # an all-digit id has no upper case
            return record, secret


@pytest.mark.parametrize("target", REVOKE_TARGETS)
@pytest.mark.parametrize("role", ROLES)
def test_revoke_api_key_never_reaches_another_tenant_unless_operator(world, role, target):
    w = world
    victim, victim_secret = _victim(w, target)
    key_id = {
        "unknown": "0123456789ab",
        "empty": "",
        "other-id-uppercase": victim.key_id.upper(),
        "other-id-trailing-space": victim.key_id + " ",
        "other-id-zero-width-space": victim.key_id + "\u200b",
        "sql": f"{victim.key_id}' OR '1'='1",
        "percent": "%",
    }.get(target, victim.key_id)
    exact = key_id == victim.key_id
    c = w.caller(role)
    before = snapshot(w)

    outcome = attempt(lambda: c.admin.RevokeApiKey(pb.RevokeApiKeyRequest(key_id=key_id), metadata=c.metadata))

    after = snapshot(w)
    revoked = False
    if ROLE_RANK[role] < ROLE_RANK["tenant-admin"]:
        assert_refused(outcome, DENIED, needs="tenant-admin")
    elif not key_id:
        assert_refused(outcome, INVALID, field="key_id")
    elif role == "tenant-admin" and target == "own-operator":
        assert_refused(outcome, DENIED, field="key_id")
    else:
        # A tenant-admin revokes its own tenant's keys up to its rank; another tenant's key id
        # reads as unknown (revoked=False), so it cannot even probe which ids exist.
        revoked = exact and (role == "operator" or victim.tenant == A)
        assert outcome == (OK, pb.RevokeApiKeyResponse(revoked=revoked))
    assert w.store.get(victim.key_id).revoked == revoked
    assert works(w, victim_secret) == (not revoked)
    expected = set()
    if revoked and victim.tenant != A:  # an operator revoked exactly the key it named
        expected = {("keys", victim.key_id)} | ({("b_listed",)} if victim.tenant == B else set())
    assert changes(before, after) == expected


# ---------------------------------------------------------------- CreateApiKey: no role above the caller's

MINT_ROLES = {
    "SEARCH": pb.SEARCH,
    "WRITE": pb.WRITE,
    "ADMIN": pb.ADMIN,
    "TENANT_ADMIN": pb.TENANT_ADMIN,
    "OPERATOR": pb.OPERATOR,
    "ROLE_UNSPECIFIED": pb.ROLE_UNSPECIFIED,
    "99": 99,
}
MINTED_AS = {
    pb.SEARCH: "search",
    pb.WRITE: "write",
    pb.ADMIN: "tenant-admin",
    pb.TENANT_ADMIN: "tenant-admin",
    pb.OPERATOR: "operator",
}


@pytest.mark.parametrize("tenant", ["", B], ids=["own", "other"])
@pytest.mark.parametrize("requested", list(MINT_ROLES))
@pytest.mark.parametrize("role", ROLES)
def test_create_api_key_mints_no_role_above_the_callers(world, role, requested, tenant):
    w = world
    c = w.caller(role)
    before = snapshot(w)
    outcome = attempt(
        lambda: c.admin.CreateApiKey(
            pb.CreateApiKeyRequest(tenant=tenant, role=MINT_ROLES[requested]), metadata=c.metadata
        )
    )
    after = snapshot(w)
    minted = MINTED_AS.get(MINT_ROLES[requested])
    if ROLE_RANK[role] < ROLE_RANK["tenant-admin"]:
        assert_refused(outcome, DENIED, needs="tenant-admin")
    elif tenant and role != "operator":
        assert_refused(outcome, DENIED, field="tenant")
    elif minted is None:
        assert_refused(outcome, INVALID, field="role")
    elif ROLE_RANK[minted] > ROLE_RANK[role]:
        assert_refused(outcome, DENIED, field="role")
    else:
        assert outcome[0] == OK, outcome
        reply = outcome[1]
        record = w.store.get(reply.key.key_id)
        assert (record.tenant, record.role) == (tenant or A, minted) and reply.key.role == ROLE_ENUM[minted]
        key = w.running.client(tenant=None, api_key=reply.secret)
        assert key.list_collections()
        if minted == "tenant-admin":  # what a tenant-admin mints is scoped like its maker
            code, details = attempt(
                lambda: key.admin.ListApiKeys(
                    pb.ListApiKeysRequest(tenant=B if tenant != B else A), metadata=key.metadata
                )
            )
            assert (code, details.split(":")[0]) == (DENIED, "tenant")
        expected = {("keys", record.key_id), ("b_listed",)} if tenant == B else set()
        assert changes(before, after) == expected
        return
    assert changes(before, after) == set()


# ---------------------------------------------------------------- CreateCollection / DropCollection

# Collections are shared by every tenant (documents are tenant-scoped inside them), so the
# targets are names: the one holding b's documents, a new one, and hostile spellings.
HOSTILE_COLLECTION_NAMES = {
    "path": "../shared",
    "sql": "shared;DROP",
    "trailing-space": "shared ",
    "zero-width-space": "shared\u200b",
    "empty": "",
}
COLLECTION_TARGETS = {
    "new": None,
    "existing": SHARED,
    "other-case": "Shared",  # a valid, distinct name
    **HOSTILE_COLLECTION_NAMES,
}


@pytest.mark.parametrize("target", list(COLLECTION_TARGETS))
@pytest.mark.parametrize("role", ROLES)
def test_create_collection_never_touches_existing_collections(world, role, target):
    w = world
    name = COLLECTION_TARGETS[target]
    if name is None or target == "other-case":
        # Unique per case: two roles creating the same new name would depend on case order.
        name = fresh("new" if name is None else "Shared")
    c = w.caller(role)
    before = snapshot(w)
    outcome = attempt(lambda: c.create_collection(name))
    after = snapshot(w)
    if ROLE_RANK[role] < ROLE_RANK["tenant-admin"]:
        assert_refused(outcome, DENIED, needs="tenant-admin")
    elif target in HOSTILE_COLLECTION_NAMES:
        assert_refused(outcome, INVALID, field="name")
    elif target == "existing":  # re-creating b's collection must not wipe or replace it
        assert_refused(outcome, grpc.StatusCode.ALREADY_EXISTS)
        assert SHARED in outcome[1]
    else:
        assert outcome[0] == OK and outcome[1].name == name
        # A new, empty collection appears in the shared list; nothing else moves.
        assert after["collections"] == sorted(before["collections"] + [name])
        assert changes(before, after) == {("collections",)}
        return
    assert changes(before, after) == set()


DROP_TARGETS = {
    "holding-b-documents": SHARED,  # an operator drops a scratch copy instead, see below
    "missing": None,
    "other-case": "sHaReD",
    **HOSTILE_COLLECTION_NAMES,
}


@pytest.mark.parametrize("target", list(DROP_TARGETS))
@pytest.mark.parametrize("role", ROLES)
def test_only_an_operator_drops_a_collection(world, role, target):
    w = world
    name = DROP_TARGETS[target]
    if name is None:
        name = fresh("missing")
    if role == "operator" and target == "holding-b-documents":
        # The operator's drop succeeds by design; dropping "shared" would end the module's
        # world, so it drops a scratch collection that holds b's (and a's) documents too.
        name = fresh("scratch")
        w.ops.create_collection(name)
        w.b["write"].upsert(name, B_DOCS)
        w.caller("write").upsert(name, [{"id": "a1", "text": "tenant a ledger"}])
    c = w.caller(role)
    before = snapshot(w)
    outcome = attempt(lambda: c.drop_collection(name))
    after = snapshot(w)
    if role != "operator":
        # A collection holds every tenant's documents: dropping it is no tenant's decision.
        assert_refused(outcome, DENIED, needs="operator")
    elif target in HOSTILE_COLLECTION_NAMES:
        assert_refused(outcome, INVALID, field="name")
    elif target in ("missing", "other-case"):
        assert_refused(outcome, grpc.StatusCode.NOT_FOUND)
        assert repr(name) in outcome[1]
    else:
        assert outcome == (OK, True)
        assert after["collections"] == sorted(set(before["collections"]) - {name})
        assert changes(before, after) == {("collections",)}  # b's documents in "shared" stay
        return
    assert changes(before, after) == set()


# ---------------------------------------------------------------- every admin RPC at once


def _aimed_at_b(w: World, rpc: str):
    """The admin RPC aimed as far as it reaches: at tenant b, b's key, b's collection. Made
    before the "before" snapshot: RevokeApiKey's victim is a key of b's own, so that a bug
    here cannot break the other cases."""
    if rpc == "RevokeApiKey":
        victim, _ = w.store.create(B, "write", "victim")
        return lambda c: c.admin.RevokeApiKey(pb.RevokeApiKeyRequest(key_id=victim.key_id), metadata=c.metadata)
    return {
        "CreateApiKey": lambda c: c.admin.CreateApiKey(
            pb.CreateApiKeyRequest(tenant=B, role=pb.SEARCH), metadata=c.metadata
        ),
        "ListApiKeys": lambda c: c.admin.ListApiKeys(pb.ListApiKeysRequest(tenant=B), metadata=c.metadata),
        "SetBudget": lambda c: c.set_budget(B, max_depth=200),
        "GetBudget": lambda c: c.get_budget(B),
        "ListBudgets": lambda c: c.list_budgets(),
        "DeleteBudget": lambda c: c.delete_budget(B),
        "CreateCollection": lambda c: c.create_collection(fresh("new")),
        "DropCollection": lambda c: c.drop_collection(SHARED),
    }[rpc]


ADMIN_RPCS = [
    "CreateApiKey",
    "ListApiKeys",
    "RevokeApiKey",
    "SetBudget",
    "GetBudget",
    "ListBudgets",
    "DeleteBudget",
    "CreateCollection",
    "DropCollection",
]


@pytest.mark.parametrize("rpc", ADMIN_RPCS)
@pytest.mark.parametrize("revoked_by", ["operator", "itself"])
def test_a_revoked_tenant_admin_key_administers_nothing(world, revoked_by, rpc):
    w = world
    record, secret = w.store.create(A, "tenant-admin", "to be revoked")
    c = w.running.client(tenant=None, api_key=secret)
    assert c.admin.ListApiKeys(pb.ListApiKeysRequest(), metadata=c.metadata).keys  # it works, and the server caches it
    revoker = w.ops if revoked_by == "operator" else c  # through the server, which drops its cached entry
    assert revoker.admin.RevokeApiKey(pb.RevokeApiKeyRequest(key_id=record.key_id), metadata=revoker.metadata).revoked
    call = _aimed_at_b(w, rpc)
    before = snapshot(w)
    outcome = attempt(lambda: call(c))
    assert_refused(outcome, grpc.StatusCode.UNAUTHENTICATED)
    assert "revoked" in outcome[1]
    assert changes(before, snapshot(w)) == set()
    # ... and at its own tenant too: a revoked key is nobody.
    assert (
        attempt(lambda: c.admin.ListApiKeys(pb.ListApiKeysRequest(), metadata=c.metadata))[0]
        == grpc.StatusCode.UNAUTHENTICATED
    )


@pytest.mark.parametrize("rpc", ADMIN_RPCS)
@pytest.mark.parametrize("role", ROLES)
def test_a_forged_tenant_header_on_admin_calls_is_refused(world, role, rpc):
    """The key decides the tenant: a's key with `x-tenant: b` is PERMISSION_DENIED for every
    admin call and every role, an operator's included, before anything is done."""
    w = world
    c = w.running.client(tenant=B, api_key=w.secrets[role])
    call = _aimed_at_b(w, rpc)
    before = snapshot(w)
    outcome = attempt(lambda: call(c))
    assert_refused(outcome, DENIED)
    assert "x-tenant" in outcome[1]
    assert changes(before, snapshot(w)) == set()
