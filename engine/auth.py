"""Who is calling: the tenant and role of a call, from its API key (or, in development
mode, from the x-tenant header), and what that role may do."""

from __future__ import annotations

import grpc

from hybridsearch.engine.api_keys import ROLE_RANK, ApiKeyStore
from hybridsearch.engine.errors import ServiceError, permission_denied, unauthenticated
from hybridsearch.engine.tenancy import TENANT_HEADER, check_tenant_name, tenant_from_metadata


class Authenticator:
    """Who is calling: an API key (``authorization: Bearer <key>``) names the tenant and role.

    In development mode (``auth_mode: dev_header``, off by default) the tenant comes
    from the ``x-tenant`` header and every caller is an operator. How many calls of a
    tenant run at once is admission's business (engine/admission.py), decided on arrival.
    """

    def __init__(self, settings, keys: ApiKeyStore | None = None):
        self.dev_mode = settings.auth_mode == "dev_header"
        self.keys = keys

    def identify(self, metadata) -> str | None:
        """The caller's tenant for admission, or None when its credentials do not hold (the
        handler then answers why)."""
        try:
            return self.principal(metadata)[0]
        except ServiceError:
            return None

    def principal(self, metadata) -> tuple[str, str]:
        """(tenant, role) of the caller."""
        if self.dev_mode:
            return tenant_from_metadata(metadata), "operator"
        values = [v for k, v in metadata if k == "authorization"]
        if not values:
            raise unauthenticated("missing `authorization: Bearer <API key>` metadata")
        if len(values) > 1 or not isinstance(values[0], str) or not values[0].startswith("Bearer "):
            raise unauthenticated("authorization metadata must be one `Bearer <API key>` value")
        record = self.keys.verify(values[0].removeprefix("Bearer ").strip()) if self.keys else None
        if record is None:
            raise unauthenticated("invalid or revoked API key")
        claimed = [v for k, v in metadata if k == TENANT_HEADER]
        if claimed and claimed != [record.tenant]:
            # The key decides the tenant; a header naming another one is a forgery, not a hint.
            raise permission_denied(f"{TENANT_HEADER} metadata does not match the API key's tenant")
        return record.tenant, record.role

    def require(self, context: grpc.ServicerContext, role: str) -> str:
        """The caller's tenant, if its role is at least ``role``."""
        return self.caller(context, role)[0]

    def caller(self, context: grpc.ServicerContext, role: str) -> tuple[str, str]:
        """(tenant, role) of a caller whose role is at least ``role``."""
        tenant, granted = self.principal(context.invocation_metadata() or ())
        if ROLE_RANK[granted] < ROLE_RANK[role]:
            raise permission_denied(f"this API key has role {granted!r}; the call needs {role!r}")
        return tenant, granted

    @staticmethod
    def target_tenant(own: str, granted: str, requested: str, field: str = "tenant") -> str:
        """The tenant a TenantAdmin call acts on: ``requested`` (empty: the caller's own),
        which only an operator may set to another tenant."""
        target = check_tenant_name(requested, field) if requested else own
        if target != own and granted != "operator":
            raise permission_denied(f"{field}: a {granted} key acts on its own tenant {own!r} only, not {target!r}")
        return target
