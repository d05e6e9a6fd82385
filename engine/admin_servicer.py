"""The TenantAdmin servicer: API keys and rerank budgets, each call scoped by the caller's role."""

from __future__ import annotations

from hybridsearch.engine.api_keys import ROLE_RANK, ApiKeyStore
from hybridsearch.engine.auth import Authenticator
from hybridsearch.engine.errors import failed_precondition, invalid, permission_denied
from hybridsearch.engine.rpc import rpc
from hybridsearch.engine.service import SearchService
from hybridsearch.engine.tenancy import check_tenant_name
from hybridsearch.engine.wire import requests as wire_in
from hybridsearch.engine.wire.replies import api_key_message, budget_message
from hybridsearch.v1 import hybridsearch_pb2 as pb
from hybridsearch.v1 import hybridsearch_pb2_grpc as pb_grpc


class TenantAdminServicer(pb_grpc.TenantAdminServicer):
    """Operators set per-tenant rerank budgets; they persist across restarts."""

    def __init__(self, service: SearchService, auth: Authenticator, keys: ApiKeyStore):
        self.service = service
        self.auth = auth
        self.keys = keys

    def _budgets(self):
        if self.service.rerank_stage is None:
            raise failed_precondition("reranking is disabled on this server (rerank.enabled = false)")
        return self.service.rerank_stage.budgets

    @rpc
    def SetBudget(self, request, context):
        # Operators only: a tenant must not raise its own rerank budget.
        self.auth.require(context, "operator")
        budget = wire_in.rerank_budget(request.budget, self.service.settings.limits.max_depth)
        return budget_message(self._budgets().set(budget))

    @rpc
    def GetBudget(self, request, context):
        tenant = self.auth.target_tenant(*self.auth.caller(context, "tenant-admin"), request.tenant)
        return budget_message(self._budgets().effective(tenant))

    @rpc
    def ListBudgets(self, request, context):
        self.auth.require(context, "operator")
        store = self._budgets()
        return pb.ListBudgetsResponse(
            budgets=[budget_message(b) for b in store.list()], default_budget=budget_message(store.default)
        )

    @rpc
    def DeleteBudget(self, request, context):
        self.auth.require(context, "operator")
        tenant = check_tenant_name(request.tenant, "tenant")
        return pb.DeleteBudgetResponse(deleted=self._budgets().delete(tenant))

    @rpc
    def CreateApiKey(self, request, context):
        own, granted = self.auth.caller(context, "tenant-admin")
        tenant = self.auth.target_tenant(own, granted, request.tenant)
        role, description = wire_in.api_key_request(request)
        if ROLE_RANK[role] > ROLE_RANK[granted]:
            raise permission_denied(f"role: a {granted} key cannot create a {role} key")
        record, secret = self.keys.create(tenant, role, description)
        return pb.CreateApiKeyResponse(key=api_key_message(record), secret=secret)

    @rpc
    def ListApiKeys(self, request, context):
        own, granted = self.auth.caller(context, "tenant-admin")
        # An operator's empty tenant lists every tenant's keys; anyone else's, their own.
        tenant = (
            ""
            if granted == "operator" and not request.tenant
            else self.auth.target_tenant(own, granted, request.tenant)
        )
        return pb.ListApiKeysResponse(keys=[api_key_message(r) for r in self.keys.list(tenant)])

    @rpc
    def RevokeApiKey(self, request, context):
        own, granted = self.auth.caller(context, "tenant-admin")
        if not request.key_id:
            raise invalid("key_id", "must not be empty")
        if granted != "operator":
            record = self.keys.get(request.key_id)
            # Another tenant's key answers as an unknown one: no probing of key ids.
            if record is None or record.tenant != own:
                return pb.RevokeApiKeyResponse(revoked=False)
            if ROLE_RANK[record.role] > ROLE_RANK[granted]:
                raise permission_denied(f"key_id: a {granted} key cannot revoke a {record.role} key")
        return pb.RevokeApiKeyResponse(revoked=self.keys.revoke(request.key_id))
