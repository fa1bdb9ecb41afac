"""The spaCy project workflow (project.yml): fetch -> convert -> train ->
evaluate -> package, run for real through ``python -m spacy project run`` on a
small slice of UD English EWT, in a temporary copy of the project.

Needs the local treebank (the ``ewt_dir`` fixture skips without it) and the
``build`` package (``spacy package --build wheel``). Takes about a minute or
two on a CPU: a tiny model, 50 training steps, 300 + 100 sentences.
"""
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import List

import pytest
import srsly

from conftest import TINY_MODEL

ROOT = Path(__file__).resolve().parent.parent
BASE_CONFIG = "lstm_tagger_efficiency"
CONFIG = "tiny_workflow"  # written into the temporary project's configs/
PACKAGE = "tiny_workflow_tagger"  # -> en_tiny_workflow_tagger
N_TRAIN, N_DEV = 300, 100
SENTENCE = "She ate the green ham quickly ."


def first_sentences(src: Path, dest: Path, n: int) -> None:
    """Write the first ``n`` sentences of a CoNLL-U file (blank-line separated)."""
    blocks = src.read_text(encoding="utf8").split("\n\n")[:n]
    dest.write_text("\n\n".join(blocks).strip("\n") + "\n\n", encoding="utf8")


def copy_project(dest: Path) -> Path:
    """A clean copy of the project: project.yml, configs/, scripts/ (no data, no
    outputs), plus configs/tiny_workflow.cfg: the efficiency config with the
    tests' tiny model and a 50-step budget."""
    from spacy.util import load_config

    dest.mkdir()
    shutil.copy(ROOT / "project.yml", dest / "project.yml")
    for folder in ("configs", "scripts"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    overrides = {"training.max_steps": 50, "training.eval_frequency": 25, "training.logger.progress_bar": False}
    overrides.update({f"components.lstm_tagger.model.{k}": v for k, v in TINY_MODEL.items()})
    config = load_config(dest / "configs" / f"{BASE_CONFIG}.cfg", overrides=overrides, interpolate=False)
    config.to_disk(dest / "configs" / f"{CONFIG}.cfg")
    return dest


def spacy_project(project: Path, args: List[str], treebank: Path, timeout: int = 300):
    env = dict(os.environ, SPACY_LSTM_TAGGER_EWT_DIR=str(treebank), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WEASEL_CONFIG_OVERRIDES", None)
    return subprocess.run(
        [sys.executable, "-m", "spacy", "project", "run", *args],
        cwd=project, env=env, capture_output=True, text=True, timeout=timeout,
    )


def check(proc) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"exit status {proc.returncode}\n{out[-6000:]}"
    return out


@pytest.fixture
def tiny_treebank(ewt_dir: Path, tmp_path: Path) -> Path:
    """A "local treebank" directory: the first 300 train and 100 dev sentences, no test split."""
    treebank = tmp_path / "treebank"
    treebank.mkdir()
    first_sentences(ewt_dir / "en_ewt-ud-train.conllu", treebank / "en_ewt-ud-train.conllu", N_TRAIN)
    first_sentences(ewt_dir / "en_ewt-ud-dev.conllu", treebank / "en_ewt-ud-dev.conllu", N_DEV)
    return treebank


def test_workflow_all_end_to_end(tiny_treebank: Path, tmp_path: Path):
    if importlib.util.find_spec("build") is None:
        pytest.skip("`spacy package --build wheel` needs the 'build' package: pip install build")
    project = copy_project(tmp_path / "project")
    run_all = [
        "all", ".",
        "--vars.config", CONFIG,
        "--vars.package_name", PACKAGE,
    ]
    out = check(spacy_project(project, run_all, tiny_treebank))

    # fetch: the local treebank is linked, not downloaded; no test split, said so
    for split in ("train", "dev"):
        asset = project / "assets" / f"en_ewt-ud-{split}.conllu"
        assert asset.is_file() and asset.resolve().parent == tiny_treebank.resolve()
    assert not (project / "assets" / "en_ewt-ud-test.conllu").exists()
    assert "not byte-identical" in out  # the slices are not the release files: warned, used anyway

    # convert: DocBins with all sentences, 10 per doc
    from spacy.tokens import DocBin
    import spacy

    vocab = spacy.blank("en").vocab
    for split, n in (("train", N_TRAIN), ("dev", N_DEV)):
        path = project / "corpus" / f"en_ewt-ud-{split}.spacy"
        docs = list(DocBin().from_disk(path).get_docs(vocab))
        assert len(docs) == n // 10
        assert sum(len(list(doc.sents)) for doc in docs) == n
    assert not (project / "corpus" / "en_ewt-ud-test.spacy").exists()

    # train: model-best with the tiny model and the overridden step budget
    model_best = project / "training" / CONFIG / "model-best"
    assert (model_best / "config.cfg").is_file()
    cfg = spacy.util.load_config(model_best / "config.cfg")
    assert cfg["training"]["max_steps"] == 50
    assert cfg["components"]["lstm_tagger"]["model"]["hidden_size"] == TINY_MODEL["hidden_size"]

    # evaluate: no test split -> dev scores, and the output says so
    metrics = srsly.read_json(project / "metrics" / f"{CONFIG}.json")
    assert metrics["split"] == "dev"
    assert metrics["data"].endswith("en_ewt-ud-dev.spacy")
    assert "DEV" in metrics["note"] and "Scoring the DEV split instead" in out
    assert 0.0 < metrics["tag_acc"] <= 1.0

    # package: a wheel that declares spacy-lstm-tagger, installs, loads by name and tags
    name = f"en_{PACKAGE}"
    wheel = project / "packages" / f"{name}-0.1.0" / "dist" / f"{name}-0.1.0-py3-none-any.whl"
    assert wheel.is_file()
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(f"{name}-0.1.0.dist-info/METADATA").decode("utf8")
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert any(r.startswith("spacy-lstm-tagger") for r in requires), requires
    assert any(r.startswith("spacy") and not r.startswith("spacy-") for r in requires), requires
    assert f"spacy.load('{name}') OK" in out  # scripts/check_package.py ran inside the package step

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--target", str(target), str(wheel)], check=True)
    load = (
        "import json, sys, spacy; nlp = spacy.load(sys.argv[1]); doc = nlp(sys.argv[2]);"
        "print(json.dumps({'pipes': nlp.pipe_names, 'tags': [t.tag_ for t in doc],"
        " 'labels': list(nlp.get_pipe('lstm_tagger').labels)}))"
    )
    proc = subprocess.run([sys.executable, "-c", load, name, SENTENCE], cwd=target, capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=str(target)), timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded["pipes"] == ["lstm_tagger"]
    assert len(loaded["tags"]) == len(SENTENCE.split())
    assert set(loaded["tags"]) <= set(loaded["labels"])

    # re-running skips every finished step (deps/outputs unchanged)
    out = check(spacy_project(project, run_all, tiny_treebank))
    for step in ("convert", "train", "evaluate", "package"):
        assert f"Skipping '{step}': nothing changed" in out, out[-3000:]


def test_missing_treebank_is_one_clear_line(tmp_path: Path):
    project = copy_project(tmp_path / "project")
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = spacy_project(project, ["fetch"], empty, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, proc.stderr
    assert "en_ewt-ud-train.conllu, en_ewt-ud-dev.conllu not found" in errors[0]
    assert "SPACY_LSTM_TAGGER_EWT_DIR" in errors[0]


def test_evaluate_refuses_without_converted_corpus(tmp_path: Path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate.py"), "no-model", str(tmp_path),
                           str(tmp_path / "m.json")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "run the `convert` step first" in proc.stderr


def test_asset_checksums_match_local_release(ewt_dir: Path):
    """project.yml's md5 checksums are those of the r2.16 files in the local copy
    (whose git blob ids match the release); the test split has none on purpose."""
    assets = {Path(a["dest"]).name: a for a in srsly.read_yaml(ROOT / "project.yml")["assets"]}
    for split in ("train", "dev"):
        name = f"en_ewt-ud-{split}.conllu"
        assert "/UD_English-EWT/r2.16/" in assets[name]["url"]
        assert hashlib.md5((ewt_dir / name).read_bytes()).hexdigest() == assets[name]["checksum"]
    assert "checksum" not in assets["en_ewt-ud-test.conllu"]
