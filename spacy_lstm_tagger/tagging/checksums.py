"""Checksums of files: the model's and inputs' fingerprints in the manifest,
and what a finished partition's files were when they were written, so a
resume keeps a partition only while its files are byte for byte those."""
import hashlib
from pathlib import Path
from typing import Dict, Sequence, Union

FileRecord = Dict[str, Union[int, str]]  # {"bytes": size, "sha256": hex digest}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_files(paths: Sequence[Path]) -> Dict[str, FileRecord]:
    """File name -> its size and sha256."""
    return {path.name: {"bytes": path.stat().st_size, "sha256": file_sha256(path)} for path in paths}
