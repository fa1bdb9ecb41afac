"""The output directory and its ``manifest.json``: what a run is, so that a
re-run resumes only the same run.

A resume is safe only if the model and every input are the same *content*,
not just the same paths: the manifest records a SHA-256 fingerprint of the
model's files (weights, config, vocab...) and of every input file and
partition, and a re-run whose fingerprints differ is refused.
"""
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

from .core import OutputError, OutputMismatchError

MANIFEST = "manifest.json"
# The keys that must match for a resume (the others are descriptive).
RUN_KEYS = ("model", "model_sha256", "partition_size", "conllu_unit", "probabilities", "sentences", "inputs")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_fingerprint(model: str) -> str:
    """SHA-256 over the relative paths and contents of every file of the
    pipeline directory (or of the installed package)."""
    path = Path(model)
    if not path.exists():
        from spacy.util import get_package_path

        path = get_package_path(model)
    if path.is_file():
        return _file_sha256(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(file.relative_to(path).as_posix().encode("utf8") + b"\0")
        digest.update(_file_sha256(file).encode("ascii") + b"\n")
    return digest.hexdigest()


def prepare_output(output: Path) -> None:
    """Create the output directory, or fail in one line before anything is
    written: a file in the way, or a directory we can't write to."""
    for path in (output, *output.parents):
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                where = "" if path == output else f" ({path} is a file)"
                raise OutputError(f"--output {output} is not a directory{where}")
            break
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / f".write-test-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OutputError(f"Cannot write to --output {output}: {err.strerror or err}") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _difference(output: Path, old: Dict[str, Any], new: Dict[str, Any]) -> Optional[str]:
    """What differs between the run in ``output`` and this one, or None."""
    if old.get("model") == new["model"] and old.get("model_sha256") != new["model_sha256"]:
        return (f"the model at {new['model']} has changed since {output} was started "
                f"(fingerprint {str(old.get('model_sha256'))[:12]} there, {new['model_sha256'][:12]} now)")
    old_inputs: List[Dict[str, Any]] = old.get("inputs") or []
    if len(old_inputs) == len(new["inputs"]):
        for before, now in zip(old_inputs, new["inputs"]):
            if before.get("resolved") == now["resolved"] and before != now:
                return f"the input {now['resolved']} has changed since {output} was started (its content differs)"
    for key in RUN_KEYS:
        if old.get(key) != new[key]:
            return f"{output} holds the output of a different run ({key}: {_short(old.get(key))} there, " \
                   f"{_short(new[key])} now)"
    return None


def write_or_verify_manifest(output: Path, manifest: Dict[str, Any]) -> None:
    """Write the run's manifest, or, if ``output`` already holds finished
    partitions, check that its manifest describes this very run (same model
    and input contents, same partitioning); otherwise skipping them would mix
    two runs."""
    path = output / MANIFEST
    # (a manifest without any finished partition, e.g. from a run whose model
    # failed to load, is simply replaced)
    if path.exists() and any(output.glob("part-*")):
        try:
            old = json.loads(path.read_text(encoding="utf8"))
        except (ValueError, UnicodeDecodeError):
            old = {}
        difference = _difference(output, old, manifest)
        if difference is not None:
            raise OutputMismatchError(
                f"Can't resume: {difference}. To start over, delete {output} or use a new --output; "
                "to resume, re-run with the model, inputs and options it was started with."
            )
        return
    tmp = path.with_name(f".{MANIFEST}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf8")
    os.replace(tmp, path)
