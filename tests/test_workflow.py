"""The spaCy project workflow (project.yml): fetch -> convert -> train ->
evaluate -> package, run for real through ``python -m spacy project run`` on
small slices of UD English EWT and of a small non-English treebank (Finnish
TDT, trained on its UD dev file with a held-out dev set), in temporary copies
of the project; and every documented ``spacy project run`` command, dry-run.

The runs need the local treebanks (they skip without them) and the ``build``
package (for the wheels). The EWT run takes a minute or two on a CPU: a tiny
model, 50 training steps, 300 + 100 sentences.
"""
import hashlib
import importlib.util
import json
import os
import re
import shlex
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
UD_SMALL = ROOT.parent / "shared" / "data" / "ud-small"
BASE_CONFIG = "lstm_tagger_efficiency"
CONFIG = "tiny_workflow"  # written into the temporary project's configs/
PACKAGE = "tiny_workflow_tagger"  # -> en_tiny_workflow_tagger
N_TRAIN, N_DEV = 300, 100
SENTENCE = "She ate the green ham quickly ."


def first_sentences(src: Path, dest: Path, n: int) -> None:
    """Write the first ``n`` sentences of a CoNLL-U file (blank-line separated)."""
    blocks = src.read_text(encoding="utf8").split("\n\n")[:n]
    dest.write_text("\n\n".join(blocks).strip("\n") + "\n\n", encoding="utf8")


def copy_project(dest: Path, max_steps: int = 50) -> Path:
    """A clean copy of the project: project.yml, configs/, scripts/ and the
    plugin's source (the `package` step builds its wheel), no data, no outputs;
    plus configs/tiny_workflow.cfg: the efficiency config with the tests' tiny
    model and a ``max_steps`` budget."""
    from spacy.util import load_config

    dest.mkdir()
    for name in ("project.yml", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    for folder in ("configs", "scripts", "spacy_lstm_tagger"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    overrides = {"training.max_steps": max_steps, "training.eval_frequency": max(1, max_steps // 2),
                 "training.logger.progress_bar": False}
    overrides.update({f"components.lstm_tagger.model.{k}": v for k, v in TINY_MODEL.items()})
    config = load_config(dest / "configs" / f"{BASE_CONFIG}.cfg", overrides=overrides, interpolate=False)
    config.to_disk(dest / "configs" / f"{CONFIG}.cfg")
    return dest


def spacy_project(project: Path, args: List[str], treebank: Path, timeout: int = 900):
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

    # fetch: the local treebank is linked, not downloaded; no test split
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
    model_best = project / "training" / "en_ewt" / CONFIG / "model-best"
    assert (model_best / "config.cfg").is_file()
    cfg = spacy.util.load_config(model_best / "config.cfg")
    assert cfg["training"]["max_steps"] == 50
    assert cfg["components"]["lstm_tagger"]["model"]["hidden_size"] == TINY_MODEL["hidden_size"]

    # evaluate: no test split -> dev scores, and the output says so
    metrics = srsly.read_json(project / "metrics" / "en_ewt" / f"{CONFIG}.json")
    assert metrics["split"] == "dev"
    assert metrics["data"].endswith("en_ewt-ud-dev.spacy")
    assert "DEV" in metrics["note"] and "Scoring the DEV split instead" in out
    assert 0.0 < metrics["tag_acc"] <= 1.0

    # package: the plugin's own wheel, with the presets as package data
    plugin_wheel = project / "dist" / "spacy_lstm_tagger-0.1.0-py3-none-any.whl"
    assert plugin_wheel.is_file()
    with zipfile.ZipFile(plugin_wheel) as zf:
        shipped = {Path(n).name for n in zf.namelist() if n.startswith("spacy_lstm_tagger/configs/")}
        modules = {n for n in zf.namelist() if n.endswith(".py")}
    assert shipped == {p.name for p in (ROOT / "configs").glob("lstm_*.cfg")}
    source = {p.relative_to(ROOT).as_posix() for p in (ROOT / "spacy_lstm_tagger").rglob("*.py")}
    assert modules == source
    # ... and the pipeline's wheel, which declares spacy-lstm-tagger; together they load by name and tag
    name = f"en_{PACKAGE}"
    wheel = project / "packages" / f"{name}-0.1.0" / "dist" / f"{name}-0.1.0-py3-none-any.whl"
    assert wheel.is_file()
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(f"{name}-0.1.0.dist-info/METADATA").decode("utf8")
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert any(r.startswith("spacy-lstm-tagger") for r in requires), requires
    assert any(r.startswith("spacy") and not r.startswith("spacy-") for r in requires), requires
    # scripts/check_package.py ran inside the package step, with both wheels
    assert f"spacy.load('{name}') OK with {plugin_wheel.name}" in out

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--target", str(target), str(plugin_wheel), str(wheel)], check=True)
    load = (
        "import json, sys, spacy, spacy_lstm_tagger; from spacy_lstm_tagger.presets import init_config;"
        "nlp = spacy.load(sys.argv[1]); doc = nlp(sys.argv[2]);"
        "print(json.dumps({'pipes': nlp.pipe_names, 'tags': [t.tag_ for t in doc],"
        " 'labels': list(nlp.get_pipe('lstm_tagger').labels), 'plugin': spacy_lstm_tagger.__file__,"
        " 'preset': init_config('accuracy', '-')}))"
    )
    proc = subprocess.run([sys.executable, "-c", load, name, SENTENCE], cwd=target, capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=str(target)), timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded["pipes"] == ["lstm_tagger"]
    assert len(loaded["tags"]) == len(SENTENCE.split())
    assert set(loaded["tags"]) <= set(loaded["labels"])
    assert Path(loaded["plugin"]).resolve().is_relative_to(target.resolve())  # the wheel's code
    preset = spacy.util.Config().from_str(loaded["preset"], interpolate=False)  # from the wheel's package data
    assert preset == spacy.util.load_config(ROOT / "configs" / "lstm_tagger_accuracy.cfg", interpolate=False)

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
    assert "en_ewt-ud-train.conllu not found" in errors[0]
    assert "SPACY_LSTM_TAGGER_EWT_DIR" in errors[0] and "--vars.treebank_dir" in errors[0]


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


# --- any UD treebank -------------------------------------------------------

def load_script(name: str):
    """A module from scripts/ (they are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def docbin_sentences(path: Path):
    from spacy.tokens import DocBin
    import spacy

    docs = DocBin().from_disk(path).get_docs(spacy.blank("xx").vocab)
    return [[(t.text, t.tag_) for t in sent] for doc in docs for sent in doc.sents]


def test_fetch_other_treebank_needs_a_local_dir(tmp_path: Path, capsys):
    locate = load_script("locate_treebank")
    assert locate.main(["--local", "", "--assets", str(tmp_path / "assets"), "--treebank", "fi_tdt",
                        "--project", str(ROOT / "project.yml")]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1
    assert "no download URL for fi_tdt-ud-train.conllu (only UD English EWT is fetched by URL)" in err[0]
    assert "--vars.treebank_dir" in err[0]


@pytest.fixture
def fi_tdt_slice(tmp_path: Path) -> Path:
    """A "local treebank" directory like ud-small/fi_tdt (UD dev + test files,
    no train file): its first 100 dev and 30 test sentences."""
    src = UD_SMALL / "fi_tdt"
    if not (src / "fi_tdt-ud-dev.conllu").exists():
        pytest.skip(f"the small UD treebanks are not at {UD_SMALL} (../shared/data/ud-small)")
    treebank = tmp_path / "fi_tdt"
    treebank.mkdir()
    first_sentences(src / "fi_tdt-ud-dev.conllu", treebank / "fi_tdt-ud-dev.conllu", 100)
    first_sentences(src / "fi_tdt-ud-test.conllu", treebank / "fi_tdt-ud-test.conllu", 30)
    return treebank


def test_workflow_on_a_small_finnish_treebank(fi_tdt_slice: Path, tmp_path: Path):
    """The README's worked example on a slice: train on the UD dev file with its
    last 10% held out as dev, evaluate on the UD test file, language fi."""
    project = copy_project(tmp_path / "project", max_steps=20)
    # `all` without the package step (tested on EWT above), as one workflow: one Weasel start-up
    project_yml = srsly.read_yaml(project / "project.yml")
    project_yml["workflows"]["train_and_evaluate"] = ["fetch", "convert", "train", "evaluate"]
    project_yml["workflows"]["seed_and_ensemble"] = ["train-seed", "ensemble"]
    srsly.write_yaml(project / "project.yml", project_yml)
    variables = ["--vars.treebank_dir", str(fi_tdt_slice), "--vars.treebank", "fi_tdt", "--vars.lang", "fi",
                 "--vars.train_split", "dev", "--vars.config", CONFIG]
    out = check(spacy_project(project, ["train_and_evaluate", ".", *variables], fi_tdt_slice))
    assert "holding out the last 10 of 100 sentences of fi_tdt-ud-dev.conllu as dev" in " ".join(out.split())

    corpus = project / "corpus"
    train = docbin_sentences(corpus / "fi_tdt-ud-train.spacy")
    dev = docbin_sentences(corpus / "fi_tdt-ud-dev.spacy")
    test = docbin_sentences(corpus / "fi_tdt-ud-test.spacy")
    assert (len(train), len(dev), len(test)) == (90, 10, 30)
    blocks = (fi_tdt_slice / "fi_tdt-ud-dev.conllu").read_text(encoding="utf8").split("\n\n")
    last_words = [line.split("\t")[1] for line in blocks[90].splitlines() if line[:1].isdigit() and "\t" in line
                  and line.split("\t")[0].isdigit()]
    assert [w for w, _ in dev[0]] == last_words  # dev = the file's last sentences
    assert all(tag for sent in train for _, tag in sent)  # fi_tdt has XPOS everywhere

    import spacy

    model_best = project / "training" / "fi_tdt" / CONFIG / "model-best"
    assert spacy.util.load_config(model_best / "config.cfg")["nlp"]["lang"] == "fi"
    metrics = srsly.read_json(project / "metrics" / "fi_tdt" / f"{CONFIG}.json")
    assert metrics["split"] == "test" and metrics["data"].endswith("fi_tdt-ud-test.spacy")
    assert 0.0 < metrics["tag_acc"] <= 1.0

    # a second seed, the two as an ensemble, and the ensemble evaluated like any config
    check(spacy_project(project, ["seed_and_ensemble", ".", *variables], fi_tdt_slice))
    ensemble_best = project / "training" / "fi_tdt" / f"{CONFIG}_ensemble" / "model-best"
    members = spacy.load(ensemble_best).meta["lstm_tagger_ensemble"]["members"]
    assert [Path(m["source"]).parent.name for m in members] == [CONFIG, f"{CONFIG}_seed1"]
    seed_cfg = spacy.util.load_config(project / "training" / "fi_tdt" / f"{CONFIG}_seed1" / "model-best" / "config.cfg")
    assert seed_cfg["system"]["seed"] == 1
    evaluate = [v if v != CONFIG else f"{CONFIG}_ensemble" for v in variables]
    check(spacy_project(project, ["evaluate", ".", *evaluate], fi_tdt_slice))
    ensemble_metrics = srsly.read_json(project / "metrics" / "fi_tdt" / f"{CONFIG}_ensemble.json")
    assert ensemble_metrics["split"] == "test" and 0.0 < ensemble_metrics["tag_acc"] <= 1.0


# --- documented commands ------------------------------------------------------

RUN_COMMAND = re.compile(r"(?:[A-Z_]+=\S+ )*python -m spacy project run [^`\n]*")


def documented_project_runs() -> List[str]:
    """Every `python -m spacy project run ...` command in README.md, docs/ and project.yml."""
    found = []
    for path in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "project.yml"):
        for match in RUN_COMMAND.finditer(path.read_text(encoding="utf8")):
            found.append(match.group(0).strip())
    return found


def test_documented_project_run_commands_work(tmp_path: Path, monkeypatch):
    """Each documented command names the project directory before any --vars
    (Weasel takes the first argument after the command name as the directory),
    names only declared vars, and runs (dry, through spaCy's CLI) in a copy of
    the project, its vars reaching the commands."""
    from spacy.cli import app
    from typer.testing import CliRunner

    commands = documented_project_runs()
    with_vars = [c for c in commands if "--vars." in c]
    assert len(with_vars) >= 4, commands
    declared = set(srsly.read_yaml(ROOT / "project.yml")["vars"])
    project = copy_project(tmp_path / "project")
    monkeypatch.chdir(project)
    monkeypatch.delenv("SPACY_CONFIG_OVERRIDES", raising=False)
    monkeypatch.delenv("WEASEL_CONFIG_OVERRIDES", raising=False)
    for command in commands:
        args = shlex.split(command)
        env_vars = {}
        while "=" in args[0]:
            key, value = args.pop(0).split("=", 1)
            env_vars[key] = value
        assert args[:5] == ["python", "-m", "spacy", "project", "run"], command
        rest = args[5:]
        if any(a.startswith("--vars.") for a in rest):
            assert rest[1] == ".", f"the project directory must come before --vars: {command}"
        names = {a[len("--vars."):] for a in rest if a.startswith("--vars.")}
        assert names <= declared, f"undeclared vars {names - declared} in: {command}"
        with monkeypatch.context() as env:
            for key, value in env_vars.items():
                env.setenv(key, value)
            result = CliRunner().invoke(app, ["project", "run", *rest, "--dry"])
        assert result.exit_code == 0, f"{command}\n{result.output[-3000:]}"
        assert "Running command" in result.output, result.output[-2000:]
        for name, value in zip(rest, rest[1:]):
            if name.startswith("--vars."):
                assert value in result.output, f"{name} {value} does not reach the commands of: {command}"
        for key, value in env_vars.items():
            assert value in result.output, f"{key}={value} does not reach the commands of: {command}"


def test_plugin_version_var_matches_the_package():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11: pytest's own dependency
        import tomli as tomllib
    import spacy_lstm_tagger

    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf8"))["project"]["version"]
    assert srsly.read_yaml(ROOT / "project.yml")["vars"]["plugin_version"] == version == spacy_lstm_tagger.__version__
