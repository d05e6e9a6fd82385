"""Fuzzing every request message: the server never crashes and every error is a proper status.

The cases (Hypothesis strategies for every RPC of ``HybridSearch`` and ``TenantAdmin``,
and what counts as a problem) live in :mod:`benchmarks.fuzz_cases`, shared with the long
run. Every call must either succeed or fail with a status in ``ALLOWED``, never INTERNAL
or UNKNOWN, with a non-empty message. Afterwards the server must still answer a good
Search and report SERVING.

The short version runs in the default suite (``HSEARCH_FUZZ_EXAMPLES``, default
``DEFAULT_EXAMPLES``); ``python -m benchmarks.fuzz_api --minutes 5`` runs the same
strategies for minutes against a server in a subprocess. The random seed is printed
(and can be pinned with ``HSEARCH_FUZZ_SEED``).
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, seed, settings

from benchmarks.fuzz_cases import (
    DEFAULT_EXAMPLES,
    Stubs,
    calls,
    check_still_serving,
    problem,
    run_call,
    run_seed,
    seed_collections,
)

# ---------------------------------------------------------------- the short test (default suite)

FUZZ_SEED = run_seed()
EXAMPLES = int(os.environ.get("HSEARCH_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
STATUS_COUNTS: Counter = Counter()
RPC_COUNTS: Counter = Counter()


@pytest.fixture(scope="module")
def fuzz_stubs(server) -> Stubs:
    seed_collections(server.target)
    return Stubs(server.channel())


@seed(FUZZ_SEED)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=False,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)
@given(call=calls())
def test_every_request_gets_a_proper_status(fuzz_stubs, call):
    outcome = run_call(fuzz_stubs, call)
    STATUS_COUNTS[outcome.code.name] += 1
    RPC_COUNTS[(call.name, outcome.code.name)] += 1
    why = problem(call, outcome)
    assert why is None, f"{why} (HSEARCH_FUZZ_SEED={FUZZ_SEED})"


def test_server_still_serves_after_fuzzing(server, fuzz_stubs):
    print(f"\nfuzz seed {FUZZ_SEED} (HSEARCH_FUZZ_SEED), {EXAMPLES} examples; statuses: {dict(STATUS_COUNTS)}")
    if STATUS_COUNTS and EXAMPLES >= 50:
        # The strategies must reach the pipeline, not only the validators.
        assert RPC_COUNTS[("HybridSearch.Search", "OK")] > 0, dict(RPC_COUNTS)
    check_still_serving(server.target)
