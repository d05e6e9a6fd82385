"""Time per pair at each exit of an early-exit cross-encoder, and of continuing survivors.

    python -m benchmarks.bench_early_exit --model benchmarks/.cache/minilm-l6-ce --exits 2,4,6

Copies the model directory to a temporary one, gives it untrained exits (copies of its own
head: the cost of a layer does not depend on what its head learnt), and times, per token
length, ``score_to(pairs, layer)`` for every exit and ``continue_to`` from the first exit to
the last for a quarter of the pairs. Median and minimum of ``--repeats`` runs after one
warm-up (on a shared machine the minimum is the better estimate of the cost itself); torch
on ``--threads`` threads. Prints one JSON line per (tokens, what).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

WORDS = "cell protein gene study effect patients treatment analysis expression cancer tumor immune response".split()


def _row(tokens: int, what: str, pairs: int, runs: list[float]) -> str:
    ms, best = statistics.median(runs), min(runs)
    return json.dumps(
        {
            "tokens": tokens,
            "what": what,
            "pairs": pairs,
            "ms_median": round(ms, 2),
            "ms_min": round(best, 2),
            "ms_per_pair_median": round(ms / pairs, 3),
            "ms_per_pair_min": round(best / pairs, 3),
        }
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a transformers cross-encoder directory (BERT family)")
    p.add_argument("--exits", default="2,4,6")
    p.add_argument("--tokens", default="128,192", help="pair lengths to time")
    p.add_argument("--pairs", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    from hybridsearch.rerank.backends import load_backend
    from hybridsearch.rerank.base import EncodedPairs
    from hybridsearch.rerank.early_exit import add_exit_heads

    torch.set_num_threads(args.threads)
    exits = [int(x) for x in args.exits.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        shutil.copytree(args.model, model_dir, ignore=shutil.ignore_patterns("onnx", "checkpoint*"))
        add_exit_heads(model_dir, exits)
        backend = load_backend(
            "early-exit",
            "bench",
            str(model_dir),
            max_length=max(int(t) for t in args.tokens.split(",")),
            batch_size=args.batch_size,
        )
        for tokens in (int(t) for t in args.tokens.split(",")):
            doc = " ".join(WORDS[i % len(WORDS)] for i in range(tokens * 2))
            pairs = backend.encode("what causes cancer", [doc] * args.pairs)
            ids = [seq[: tokens - 1] + seq[-1:] for seq in pairs.input_ids]  # exactly `tokens` each
            pairs = EncodedPairs(ids, pairs.truncated)
            backend.score_to(pairs, exits[0])  # warm-up
            for layer in backend.exit_layers:
                runs = [backend.score_to(pairs, layer).ms for _ in range(args.repeats)]
                print(_row(tokens, f"score_to {layer}", args.pairs, runs))
            survivors = list(range(args.pairs // 4))
            first = backend.score_to(pairs, backend.exit_layers[0])
            runs = [backend.continue_to(first, survivors, backend.max_layer).ms for _ in range(args.repeats)]
            print(_row(tokens, f"continue {backend.exit_layers[0]}->{backend.max_layer}", len(survivors), runs))
            runs = []
            backend.score_encoded(pairs)  # warm-up
            for _ in range(args.repeats):
                began = time.perf_counter()
                backend.score_encoded(pairs)
                runs.append((time.perf_counter() - began) * 1000)
            print(_row(tokens, "score_encoded (full depth, the model's own forward)", args.pairs, runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
