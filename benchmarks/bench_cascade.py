"""The cascade (screen at an early exit, finish the best) against today's AUTO, on SciFact.

Three steps, each cached under ``--work`` so a rerun only redoes what changed:

1. **Exit heads.** A model ``hsearch train-reranker --exits`` trained (its heads learnt jointly
   with the encoder) is used as it is. Otherwise the trained reranker (``--model``) keeps its own head as the last exit;
   heads after the earlier ``--exits`` are trained on the *train* split with the encoder
   frozen (so full-depth scores are exactly the reranker's): the first-token vectors at each
   exit are computed once for every (query, positive, hard negatives) group, and each head is
   fitted to them with the same listwise loss as the reranker (positive first, softmax
   cross-entropy). Writes a model directory with the heads beside it.
2. **Scores and real timings.** For every *test* query, its fused top ``--depth`` candidates
   (the service's RRF, as training mines them) are scored at every exit through the
   early-exit backend the service runs (``score_to`` the first exit, then ``continue_to`` the
   next ones: the hidden states are carried, nothing is recomputed), and every batch's time
   per layer segment is kept. Those timings fit the per-segment latency model
   (``rerank.cascade.LayerLatency``) that both policies plan with.
3. **Replay.** For each latency target, each query is planned twice, by today's AUTO
   (``rerank.policy.choose_depth`` with the full model) and by the cascade
   (``rerank.cascade.choose_plan``), from its own candidates' token counts; each plan's
   ranking is built from the stored scores as the rerank stage builds it (the finished head
   ordered by its final scores, blended with the fused rank when ``--fusion-weight`` > 0; the
   rest in fused order) and scored with nDCG@10. Targets are multiples of CE@10's predicted
   p95 (the time to score the first 10 candidates in full), the issue's "tightest target" is
   1.1x. The difference per query is tested with a paired bootstrap and a sign test.

    python -m benchmarks.bench_cascade --model /path/to/trained/reranker --cache benchmarks/.cache/scifact
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import harness
from benchmarks.paired import paired

harness.offline_env()

import numpy as np  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", type=Path, required=True, help="a trained cross-encoder directory (hsearch train-reranker's output)"
    )
    p.add_argument("--data", type=Path, default=harness.DEFAULT_DATA, help="SciFact (BEIR layout)")
    p.add_argument(
        "--cache",
        type=Path,
        default=harness.CACHE / "scifact",
        help="the training cache: Milvus Lite index and ranked lists (hsearch train-reranker --cache-dir)",
    )
    p.add_argument(
        "--work", type=Path, default=harness.CACHE / "cascade", help="this benchmark's own cache (heads, scores)"
    )
    p.add_argument("--exits", default="2,4", help="earlier exits to add (the model's last layer is always one)")
    p.add_argument("--negatives", type=int, default=7, help="hard negatives per training group for the heads")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument(
        "--max-groups", type=int, default=0, help="training groups for the heads (0: all; fewer for a smoke run)"
    )
    p.add_argument("--depth", type=int, default=50, help="fused candidates per test query")
    p.add_argument("--max-length", type=int, default=192)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--keep", type=int, nargs="+", default=[3, 5, 10], help="cascade_keep values to replay")
    p.add_argument(
        "--screen-weights",
        type=float,
        nargs="+",
        default=[0.0, 0.5, 1.0, 2.0, 4.0],
        help="cascade_screen_weight values to replay (the fused rank's weight when choosing the survivors; 0: the exit alone)",
    )
    p.add_argument(
        "--screen-layers",
        default="all",
        help="the exits a cascade may screen at, one set per comma-less token: 'all 2 4' replays each",
    )
    p.add_argument(
        "--targets",
        type=float,
        nargs="+",
        default=[1.1, 1.5, 2.0, 3.0, 5.0],
        help="latency targets, multiples of CE@10's p95",
    )
    p.add_argument(
        "--fusion-weight",
        type=float,
        nargs="+",
        default=[0.0, 1.0],
        help="blend of the finished head with the fused rank (fusion.blend)",
    )
    p.add_argument("--queries", type=int, default=0, help="test queries to use (0: all)")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--no-plot", dest="plot", action="store_false", help="skip the Pareto plots (pareto-fw<w>.png)")
    p.add_argument("--out", type=Path, default=harness.RESULTS / "cascade")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------- 1. exit heads


def train_heads(args, beir, exits: list[int]) -> Path:
    """A copy of ``--model`` with trained heads after ``exits`` (cached by its inputs)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hybridsearch.rerank.early_exit import EarlyExitCrossEncoder, read_exit_config
    from hybridsearch.training.hard_negatives import fused_lists, hard_negatives

    out = args.work / f"model-exits-{'-'.join(map(str, exits))}"
    spec = read_exit_config(out) if out.is_dir() else None
    if spec is not None and spec.get("trained") and (out / "heads-info.json").is_file():
        harness.say(f"exit heads cached in {out}")
        return out
    # The lists hsearch train-reranker mined (its --mine-depth 30, 100 candidates per route): cached.
    ranked, _ = fused_lists(beir, "train", args.cache, depth=30, candidates=100)
    negatives = hard_negatives(beir, "train", ranked.ranked)
    rng = np.random.default_rng(args.seed)
    groups = []
    for qid, positives in sorted(beir.positives("train").items()):
        pool = negatives.get(qid, [])
        if len(pool) < args.negatives:
            continue
        for did in sorted(positives):
            chosen = [pool[i] for i in sorted(rng.choice(len(pool), args.negatives, replace=False))]
            groups.append(
                (beir.queries[qid], [beir.corpus[did].full_text] + [beir.corpus[d].full_text for d in chosen])
            )
    if args.max_groups:
        groups = groups[: args.max_groups]
    harness.say(f"exit heads: {len(groups)} training groups of 1 + {args.negatives}")
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(args.model))
    model = EarlyExitCrossEncoder.from_model(
        AutoModelForSequenceClassification.from_pretrained(str(args.model)), exits
    ).eval()
    vectors = {a: [] for a in exits}
    started = time.perf_counter()
    with torch.inference_mode():
        for gi, (query, docs) in enumerate(groups):
            enc = tokenizer(
                [query] * len(docs),
                docs,
                truncation="longest_first",
                max_length=args.max_length,
                padding=True,
                return_tensors="pt",
            )
            state = model.embed(enc["input_ids"], enc["attention_mask"])
            for a in exits:
                state = model.run_layers(state, a)
                vectors[a].append(state.hidden[:, 0].clone())
            if gi % 200 == 0:
                harness.say(f"  vectors {gi}/{len(groups)} ({time.perf_counter() - started:.0f} s)")
    vector_s = time.perf_counter() - started
    info = {
        "groups": len(groups),
        "negatives": args.negatives,
        "epochs": args.epochs,
        "vectors_s": round(vector_s, 1),
        "loss": {},
    }
    for a in exits:
        x = torch.stack(vectors[a])  # (groups, 1 + negatives, hidden)
        head = model.heads[str(a)]
        head.train()
        optimiser = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.01)
        target = torch.zeros(len(x), dtype=torch.long)  # the positive is first
        for epoch in range(args.epochs):
            order = torch.randperm(len(x))
            total = 0.0
            for start in range(0, len(x), 32):
                batch = x[order[start : start + 32]]
                logits = head(batch.reshape(-1, 1, batch.shape[-1])).reshape(batch.shape[0], -1)
                loss = torch.nn.functional.cross_entropy(logits, target[: len(batch)])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(batch)
            if epoch in (0, args.epochs - 1):
                info["loss"].setdefault(str(a), []).append(round(total / len(x), 4))
        head.eval()
        harness.say(
            f"  exit {a}: listwise loss {info['loss'][str(a)][0]} -> {info['loss'][str(a)][-1]} (chance {math.log(1 + args.negatives):.3f})"
        )
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(args.model, out, ignore=shutil.ignore_patterns("checkpoint*", "onnx"))
    model.save_exit_heads(out, trained=True)
    (out / "heads-info.json").write_text(json.dumps(info, indent=1))
    return out


def jointly_trained(model: Path) -> dict | None:
    """How ``train-reranker --exits`` trained ``model`` (None: a model without trained exits)."""
    from hybridsearch.rerank.early_exit import read_exit_config

    spec = read_exit_config(model)
    if spec is None or not spec.get("trained"):
        return None
    path = model / "training_info.json"
    info = json.loads(path.read_text()) if path.is_file() else {}
    if not (info.get("key") or {}).get("exits"):
        return None  # heads added afterwards (this script's step 1), not by train-reranker
    return {
        "joint": True,
        "exits": spec["exit_layers"],
        "groups": info.get("examples"),
        "negatives": info.get("negatives"),
        "epochs": info.get("epochs"),
        "loss": info.get("epoch_losses"),
        "train_seconds": info.get("train_seconds"),
    }


# ---------------------------------------------------------------------------- 2. scores, timings


def score_test(args, beir, model_dir: Path, exits: list[int]) -> dict:
    """Per test query: fused candidates, their tokens, logits at every exit; and every batch's time."""
    from hybridsearch.rerank.backends.early_exit import EarlyExitBackend
    from hybridsearch.training.hard_negatives import fused_lists

    name = model_dir.name
    if model_dir.resolve().parent != args.work.resolve():  # a model of its own: its path names the cache
        name = "model-" + harness.hashlib.sha256(str(model_dir.resolve()).encode()).hexdigest()[:10]
    path = args.work / f"scores-{name}-d{args.depth}-L{args.max_length}-q{args.queries or 'all'}.json"
    if path.is_file():
        harness.say(f"test scores cached in {path}")
        return json.loads(path.read_text())
    ranked, _ = fused_lists(beir, "test", args.cache, depth=args.depth, candidates=max(args.depth, 100))
    ranked = ranked.ranked
    backend = EarlyExitBackend("cascade", str(model_dir), max_length=args.max_length, batch_size=args.batch_size)
    layers = backend.exit_layers
    queries, timings = {}, []
    qids = sorted(ranked)[: args.queries or None]
    started = time.perf_counter()
    for n, qid in enumerate(qids):
        ids = ranked[qid][: args.depth]
        pairs = backend.encode(beir.queries[qid], [beir.corpus[d].full_text for d in ids])
        handle = backend.score_to(pairs, layers[0])
        logits = {layers[0]: handle.raw.tolist()}
        for layer in layers[1:]:
            handle = backend.continue_to(handle, range(len(handle)), layer)
            logits[layer] = handle.raw.tolist()
        timings.extend([t.start_layer, t.end_layer, t.pairs, t.tokens, t.ms] for t in handle.history)
        queries[qid] = {"ids": ids, "tokens": pairs.tokens.tolist(), "logits": {str(k): v for k, v in logits.items()}}
        if n % 25 == 0:
            harness.say(f"  scored {n}/{len(qids)} queries ({time.perf_counter() - started:.0f} s)")
    data = {
        "exits": layers,
        "queries": queries,
        "timings": timings,
        "machine": harness.machine_info(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return data


# ---------------------------------------------------------------------------- 3. replay


def ndcg10(ranking: Sequence[str], qrels: dict[str, int]) -> float:
    gains = [qrels.get(d, 0) for d in ranking[:10]]
    dcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sorted((g for g in qrels.values() if g > 0), reverse=True)[:10]
    idcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def ranking_of(
    ids: list[str],
    screen: int,
    keep: int,
    screen_logits: np.ndarray,
    final_logits: np.ndarray,
    fusion_weight: float,
    screen_weight: float = 0.0,
) -> list[str]:
    """As the rerank stage orders a head: the best ``keep`` of the ``screen`` screened (by the
    screen's logits blended with the fused rank at ``screen_weight``, as
    ``cascade_screen_weight``; ties in fused order) ordered by their final logits (blended with
    their fused rank at ``fusion_weight``), then the other screened and the rest in fused order."""
    from hybridsearch.fusion.blend import blend_head

    if screen == 0:
        return ids
    if keep < screen:
        kept = sorted(
            blend_head(np.asarray(screen_logits[:screen]), screen_weight)[0][:keep].tolist()
        )  # back in fused order
    else:
        kept = list(range(screen))
    order, _ = blend_head(final_logits[kept], fusion_weight)
    head = [kept[i] for i in order]
    taken = set(head)
    return [ids[i] for i in head] + [ids[i] for i in range(len(ids)) if i not in taken]


def _screen_sets(spec: str) -> list[list[int]]:
    """'all 4' -> [[], [4]]: each token one set of screen layers (empty: every earlier exit)."""
    return [[] if token == "all" else [int(x) for x in token.split("+")] for token in spec.split()]


def _variant(keep: int, screens: list[int], screen_weight: float = 0.0) -> str:
    return (
        f"cascade-keep{keep}"
        + (f"-at{'+'.join(map(str, screens))}" if screens else "")
        + (f"-sw{screen_weight:g}" if screen_weight else "")
    )


def cross_fitted(runs: dict[str, list[float]], candidates: list[str], seed: int) -> tuple[np.ndarray, list[str]]:
    """The cascade variant chosen on held-out queries: the queries in two seeded folds, and
    for each fold the candidate with the best mean nDCG@10 on the *other* fold, so no query's
    figure comes from a setting picked on that query. (fold of each query, choice per fold)."""
    n = len(next(iter(runs.values())))
    fold = np.zeros(n, dtype=int)
    fold[np.random.default_rng(seed).permutation(n)[: n // 2]] = 1
    chosen = [
        max(candidates, key=lambda name: (float(np.mean(np.asarray(runs[name])[fold != f])), name)) for f in (0, 1)
    ]
    return fold, chosen


def fitted_layers(data: dict):
    from hybridsearch.rerank.cascade import LayerLatency

    layers = LayerLatency(data["exits"])
    for start, end, pairs, tokens, ms in data["timings"]:
        layers.observe(start, end, pairs, tokens, ms)
    return layers


def replay(args, beir, data: dict) -> dict:
    from hybridsearch.rerank.budgets import RerankBudget
    from hybridsearch.rerank.cascade import choose_plan
    from hybridsearch.rerank.policy import PolicyInputs, choose_depth
    from hybridsearch.rerank.signals import QuerySignals

    layers = fitted_layers(data)
    last = layers.last
    qrels = beir.qrels["test"]
    qids = [q for q in sorted(data["queries"]) if q in qrels][: args.queries or None]
    ce10 = float(
        np.median([layers.predict_ms(0, last, 10, float(np.sum(data["queries"][q]["tokens"][:10]))) for q in qids])
    )
    result = {
        "ce10_p95_ms": ce10,
        "segments": {f"{lo}-{hi}": [float(x) for x in layers.models[(lo, hi)].theta] for lo, hi in layers.segments},
        "queries": len(qids),
        "rows": [],
    }
    fused = np.array([ndcg10(data["queries"][q]["ids"], qrels[q]) for q in qids])
    result["fusion_ndcg10"] = float(fused.mean())
    for fw in args.fusion_weight:
        result["rows"] += fixed_depth_rows(args, data, qids, qrels, layers, fw)
        for mult in args.targets:
            target = mult * ce10
            variants = [
                (k, screens, sw)
                for screens in _screen_sets(args.screen_layers)
                for k in args.keep
                for sw in args.screen_weights
            ]
            runs = {"auto": [], **{_variant(k, sl, sw): [] for k, sl, sw in variants}}
            depth = {name: [] for name in runs}
            predicted = {name: [] for name in runs}
            for q in qids:
                item = data["queries"][q]
                cum = np.cumsum(np.asarray(item["tokens"], dtype=np.float64))
                inputs = PolicyInputs(
                    mode="auto",
                    budget=RerankBudget(tenant="t", max_depth=args.depth, latency_target_ms=target),
                    cumulative_tokens=cum,
                    elapsed_ms=0.0,
                    deadline_left_ms=None,
                    bucket_level=None,
                    signals=QuerySignals(False, 0.0),
                    reserve_ms=0.0,
                )
                logits = {int(k): np.asarray(v) for k, v in item["logits"].items()}
                auto = choose_depth(inputs, layers.full)
                runs["auto"].append(
                    ndcg10(ranking_of(item["ids"], auto.depth, auto.depth, logits[last], logits[last], fw), qrels[q])
                )
                depth["auto"].append(auto.depth)
                predicted["auto"].append(auto.predicted_ms)
                plans = {}
                for k, screens, sw in variants:
                    key = (k, tuple(screens))
                    if key not in plans:  # the plan does not depend on how its survivors are picked
                        plans[key] = choose_plan(inputs, layers, keep=k, screen_layers=screens)
                    plan = plans[key]
                    name = _variant(k, screens, sw)
                    runs[name].append(
                        ndcg10(
                            ranking_of(
                                item["ids"], plan.screen, plan.keep, logits[plan.screen_layer], logits[last], fw, sw
                            ),
                            qrels[q],
                        )
                    )
                    depth[name].append((plan.screen, plan.screen_layer, plan.keep))
                    predicted[name].append(plan.predicted_ms)
            # The cross-fitted cascade is one more run, assembled per query from the variant its
            # fold's other half chose, and summarised like the others.
            fold, chosen = cross_fitted(runs, [name for name in runs if name != "auto"], args.seed)
            pick = [chosen[f] for f in fold]
            for table in (runs, predicted, depth):
                table["cascade-cross-fitted"] = [table[name][i] for i, name in enumerate(pick)]
            base = np.array(runs["auto"])
            for name, values in runs.items():
                v = np.array(values)
                row = {
                    "fusion_weight": fw,
                    "target_x": mult,
                    "target_ms": round(target, 2),
                    "mode": name,
                    "ndcg10": float(v.mean()),
                    "predicted_ms_median": float(np.median(predicted[name])),
                    "predicted_ms_p95": float(np.percentile(predicted[name], 95)),
                }
                if name == "auto":
                    row["depth_median"] = float(np.median(depth[name]))
                else:
                    screens = np.array([d[0] for d in depth[name]])
                    row.update(
                        screen_median=float(np.median(screens)),
                        cascades=int(sum(1 for d in depth[name] if d[1] < last)),
                        exit_used=sorted({d[1] for d in depth[name] if d[1] < last}),
                        vs_auto=paired(dict(enumerate(base)), dict(enumerate(v)), seed=args.seed),
                    )
                if name == "cascade-cross-fitted":
                    row["chosen"] = chosen
                result["rows"].append(row)
    return result


FIXED_DEPTHS = (5, 10, 15, 20, 30, 50)


def fixed_depth_rows(args, data: dict, qids: list[str], qrels: dict, layers, fw: float) -> list[dict]:
    """CE@n, the full model on the fused top n for every query: the points the policies choose
    between, with the same latency model's prediction for each query's own token counts."""
    last = layers.last
    rows = []
    for n in [d for d in FIXED_DEPTHS if d <= args.depth]:
        scores, predicted = [], []
        for q in qids:
            item = data["queries"][q]
            logits = np.asarray(item["logits"][str(last)])
            scores.append(ndcg10(ranking_of(item["ids"], n, n, logits, logits, fw), qrels[q]))
            predicted.append(layers.predict_ms(0, last, n, float(np.sum(item["tokens"][:n]))))
        rows.append(
            {
                "fusion_weight": fw,
                "target_x": None,
                "mode": f"ce@{n}",
                "ndcg10": float(np.mean(scores)),
                "predicted_ms_median": float(np.median(predicted)),
                "predicted_ms_p95": float(np.percentile(predicted, 95)),
            }
        )
    return rows


def plot(args, result: dict, path: Path) -> None:
    """nDCG@10 against the rerank stage's predicted p95 per mode, one panel per fusion weight
    written as its own file (``pareto-fw<w>.png``); fusion alone is the dotted line."""
    from benchmarks.beir_bench import pareto_plot

    for fw in args.fusion_weight:
        points = []
        for r in result["rows"]:
            if r["fusion_weight"] != fw:
                continue
            if r["mode"].startswith("ce@"):
                family, key = "cross-encoder", r["mode"].upper()
            elif r["mode"] == "auto":
                family, key = "auto", f"AUTO {r['target_x']:g}x"
            else:
                # The cascade's point is the one configured out of fold (every variant is in the
                # table); one that never screened is AUTO's point again.
                if r["mode"] != "cascade-cross-fitted" or not r.get("cascades"):
                    continue
                family, key = "cascade", f"cascade {r['target_x']:g}x"
            points.append(
                {
                    "family": family,
                    "key": key,
                    "quality": {"ndcg@10": r["ndcg10"]},
                    "latency": {"1": {"rtt_ms": {"p95": r["predicted_ms_p95"]}}},
                }
            )
        blend = "reranked alone" if fw == 0 else f"blended with the fused rank (fusion_weight {fw:g})"
        pareto_plot(
            points,
            path.with_name(f"{path.stem}-fw{fw:g}{path.suffix}"),
            f"SciFact test, {result['queries']} queries, cascade vs AUTO vs fixed depth, {blend}",
            xlabel="rerank stage p95, predicted by the fitted per-layer latency model (ms, log scale)",
            references=[("fusion alone (no rerank)", result["fusion_ndcg10"])],
        )


def render(args, data: dict, heads_info: dict, result: dict) -> str:
    lines = [
        "# Cascade vs today's AUTO on SciFact test",
        "",
        f"- Command: `{harness.command_line('benchmarks.bench_cascade', None)}`",
        f"- Machine: {harness.machine_line(data['machine'])}",
        (
            f"- Exits {data['exits']}, trained jointly with the encoder by `hsearch train-reranker --exits` ({heads_info['groups']} groups of 1 + "
            f"{heads_info['negatives']}, {heads_info['epochs']} epochs, {heads_info['train_seconds']} s; the mean of the exits' listwise losses per epoch: {heads_info['loss']})."
            if heads_info.get("joint")
            else f"- Exits {data['exits']}; heads trained on train ({heads_info['groups']} groups of 1 + {heads_info['negatives']}, encoder frozen, "
            f"{heads_info['epochs']} epochs; listwise loss per exit first -> last epoch: {heads_info['loss']})."
        ),
        f"- {result['queries']} test queries, fused top {args.depth}, max_length {args.max_length}; scoring all exits took {data['seconds']} s. "
        f"Fusion alone: nDCG@10 {result['fusion_ndcg10']:.4f}.",
        f"- Per-segment latency model fitted to {len(data['timings'])} real batches (ms = a + b pairs + c tokens): "
        + "; ".join(f"layers {k}: a {v[0]:.2f}, b {v[1]:.3f}, c {v[2]:.4f}" for k, v in result["segments"].items())
        + f". CE@10 p95 (10 candidates in full, median over queries): {result['ce10_p95_ms']:.1f} ms.",
        "",
        "| fusion_weight | target (x CE@10) | mode | nDCG@10 | depth or screen (median) | cascades | vs AUTO: mean diff [95 % CI] | W/L/T | sign p |",
        "|---:|---:|---|---:|---:|---:|---|---|---:|",
    ]
    if args.plot:
        lines[-3:-3] = [
            "",
            "Pareto plots (nDCG@10 against the predicted p95 of the rerank stage): "
            + ", ".join(f"[fusion_weight {fw:g}](pareto-fw{fw:g}.png)" for fw in args.fusion_weight)
            + ".",
        ]
    for r in result["rows"]:
        if r["mode"].startswith("ce@"):
            lines.append(
                f"| {r['fusion_weight']:g} | fixed | {r['mode'].upper()} | {r['ndcg10']:.4f} | {r['mode'][3:]} | | | | |"
            )
        elif r["mode"] == "auto":
            lines.append(
                f"| {r['fusion_weight']:g} | {r['target_x']:g} ({r['target_ms']:.0f} ms) | AUTO | {r['ndcg10']:.4f} | {r['depth_median']:.0f} | | | | |"
            )
        else:
            p = r["vs_auto"]
            mode = (
                r["mode"]
                if "chosen" not in r
                else f"cross-fitted ({' / '.join(c.removeprefix('cascade-') for c in r['chosen'])})"
            )
            lines.append(
                f"| {r['fusion_weight']:g} | {r['target_x']:g} | {mode} | {r['ndcg10']:.4f} | {r['screen_median']:.0f} | {r['cascades']} "
                f"| {p['mean']:+.4f} [{p['ci95'][0]:+.4f}, {p['ci95'][1]:+.4f}] | {p['wins']}/{p['losses']}/{p['ties']} | {p['sign_p']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from hybridsearch.training.beir import load_beir

    exits = sorted({int(x) for x in args.exits.split(",") if x.strip()})
    beir = load_beir(args.data, splits=("train", "test"))
    args.work.mkdir(parents=True, exist_ok=True)
    heads_info = jointly_trained(args.model)
    if heads_info is not None:
        model_dir = args.model
        harness.say(
            f"{model_dir}: exits {heads_info['exits']} trained jointly by train-reranker; --exits, --negatives, --epochs and --max-groups are not used"
        )
    else:
        model_dir = train_heads(args, beir, exits)
        heads_info = json.loads((model_dir / "heads-info.json").read_text())
    data = score_test(args, beir, model_dir, exits)
    result = replay(args, beir, data)
    args.out.mkdir(parents=True, exist_ok=True)
    report = render(args, data, heads_info, result)
    (args.out / "cascade.json").write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "heads": heads_info, **result}, indent=1)
    )
    (args.out / "cascade.md").write_text(report)
    if args.plot:
        plot(args, result, args.out / "pareto.png")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
