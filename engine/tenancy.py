"""Who is calling: the tenant every call is scoped to."""

from __future__ import annotations

import re
from collections.abc import Iterable

from hybridsearch.engine.errors import invalid, unauthenticated

# Tenant names are restricted so that "<tenant>:<doc id>" primary keys are
# unambiguous and a tenant name can be spliced into an expression as a plain
# string literal with nothing to escape.
TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
TENANT_HEADER = "x-tenant"


def check_tenant_name(name: str, field: str = "tenant") -> str:
    if not name:
        raise invalid(field, "must not be empty")
    if not TENANT_NAME.fullmatch(name):
        raise invalid(
            field,
            f"{name[:80]!r} is not a valid tenant name (1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit)",
        )
    return name


def tenant_from_metadata(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    """The tenant named by the x-tenant header (development mode)."""
    values = [v for k, v in metadata if k == TENANT_HEADER]
    if not values:
        raise unauthenticated(f"missing {TENANT_HEADER} metadata: every call must name its tenant")
    if len(values) > 1:
        raise unauthenticated(f"{TENANT_HEADER} metadata given {len(values)} times; send it once")
    value = values[0]
    if isinstance(value, bytes):
        raise unauthenticated(f"{TENANT_HEADER} metadata must be text")
    if not TENANT_NAME.fullmatch(value):
        raise unauthenticated(f"{TENANT_HEADER} {value[:80]!r} is not a valid tenant name (1-64 of A-Z a-z 0-9 _ . -)")
    return value


def primary_key(tenant: str, doc_id: str) -> str:
    """The store's primary key: tenant-prefixed so tenants can never overwrite each other's ids."""
    return f"{tenant}:{doc_id}"


def doc_id_of(tenant: str, pk: str) -> str:
    return pk[len(tenant) + 1 :]
