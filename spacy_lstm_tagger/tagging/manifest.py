"""The output directory and its ``manifest.json``: what a run is, so that a
re-run resumes only the same run.

A resume is safe only if the model and every input are the same *content*,
not just the same paths: the manifest records a SHA-256 fingerprint of the
model's files (weights, config, vocab...; symlinks followed) and of every
input file and partition, and a re-run whose fingerprints differ is refused.

A partition is kept only if its files are the very bytes this run wrote:
the main process appends each finished partition's file sizes and sha256
to ``finished-partitions.log`` (:class:`FinishedLog`), with the run's id. A
partition file that is truncated, edited, not in that record (killed
between writing and recording), or older than the manifest (a manifest
deleted or replaced) is removed and tagged again, and the run says so.
"""
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .checksums import FileRecord, file_sha256
from .core import OutputError, OutputMismatchError

MANIFEST = "manifest.json"
# The keys that must match for a resume (the others are descriptive).
RUN_KEYS = ("model", "model_sha256", "partition_size", "conllu_unit", "probabilities", "sentences", "inputs")


FINISHED = "finished-partitions.log"


def model_fingerprint(model: str) -> str:
    """SHA-256 over the relative paths and contents of every file of the
    pipeline directory (or of the installed package), following symlinked
    files and directories: a component folder that is a symlink is read
    through, so weights changed behind it change the fingerprint."""
    path = Path(model)
    if not path.exists():
        from spacy.util import get_package_path

        path = get_package_path(model)
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in _files_following_symlinks(path):
        digest.update(file.relative_to(path).as_posix().encode("utf8") + b"\0")
        digest.update(file_sha256(file).encode("ascii") + b"\n")
    return digest.hexdigest()


def _files_following_symlinks(root: Path) -> List[Path]:
    """Every file under ``root`` (``__pycache__`` left out), in the order of
    their relative path parts. ``Path.rglob`` does not descend into
    symlinked directories (Python 3.11, 3.12), ``os.walk(followlinks=True)``
    does; a directory reached twice (a symlink loop) is read once."""
    files: List[Path] = []
    seen = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        stat = os.stat(dirpath)
        if (stat.st_dev, stat.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")  # (sorted: the same directory wins a loop)
        files.extend(p for p in (Path(dirpath, name) for name in filenames) if p.is_file())
    return sorted(files, key=lambda p: p.relative_to(root).parts)


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


def write_or_verify_manifest(output: Path, manifest: Dict[str, Any]) -> bool:
    """Write the run's manifest, or, if ``output`` already holds finished
    partitions, check that its manifest describes this very run (same model
    and input contents, same partitioning); otherwise skipping them would mix
    two runs. True when the manifest was (re)written: then no partition
    already there is this run's."""
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
        return False
    tmp = path.with_name(f".{MANIFEST}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf8")
    os.replace(tmp, path)
    return True


def run_id(manifest: Mapping[str, Any]) -> str:
    """What identifies the run in :data:`FINISHED`: the manifest's run keys
    and partitions."""
    key = {**{k: manifest.get(k) for k in RUN_KEYS}, "partitions": manifest.get("partitions")}
    return hashlib.sha256(json.dumps(key, sort_keys=True, ensure_ascii=False).encode("utf8")).hexdigest()


class FinishedLog:
    """``finished-partitions.log``: one JSON line per finished partition
    (the run's id, its name, its files' sizes and sha256), appended and
    fsynced by the main process after the partition's files are in place.
    A torn last line (a kill mid-append) or another run's line counts as
    no record: that partition is redone."""

    def __init__(self, output: Path, run: str):
        self.path = output / FINISHED
        self.run = run
        self._line_ended = False  # (a torn last line must not swallow the next record)

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)

    def load(self) -> Dict[str, Dict[str, FileRecord]]:
        """Partition name -> its files, as this run recorded them."""
        finished: Dict[str, Dict[str, FileRecord]] = {}
        if not self.path.exists():
            return finished
        with self.path.open(encoding="utf8", errors="replace") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("run") == self.run and isinstance(entry.get("files"), dict):
                    finished.setdefault(str(entry.get("name")), {}).update(entry["files"])
        return finished

    def record(self, result: Mapping[str, Any]) -> None:
        """Append a partition's result (from ``tag_partition``)."""
        line = json.dumps({"run": self.run, "name": result["name"], "files": result["files"]}, ensure_ascii=False)
        if not self._line_ended:
            if self.path.exists() and self.path.stat().st_size:
                with self.path.open("rb") as f:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        line = "\n" + line
            self._line_ended = True
        with self.path.open("a", encoding="utf8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())


def check_finished(output: Path, name: str, formats: Sequence[str],
                   recorded: Optional[Mapping[str, FileRecord]]) -> Optional[str]:
    """Why the partition's files in ``output`` can't be kept (None: every
    requested file is there and is what this run recorded); "" when some
    file is simply missing (not yet written)."""
    for fmt in formats:
        file = output / f"{name}.{fmt}"
        if not file.exists():
            return ""
    for fmt in formats:
        file = output / f"{name}.{fmt}"
        record = (recorded or {}).get(file.name)
        if record is None:
            return f"{file.name} is not in {FINISHED} as written by this run"
        size = file.stat().st_size
        if size != record.get("bytes"):
            return f"{file.name} has {size} bytes, {record.get('bytes')} when it was written (truncated or edited)"
        if file_sha256(file) != record.get("sha256"):
            return f"{file.name} is not the file this run wrote (its sha256 differs: edited)"
    return None
