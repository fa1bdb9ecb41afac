"""The shipped configs as presets (``python -m spacy_lstm_tagger init-config``),
their packaging."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.util import load_config

from spacy_lstm_tagger import presets

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11: pytest's own dependency
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"


def init_config(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m spacy_lstm_tagger init-config ARGS`` in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "spacy_lstm_tagger", "init-config", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def init_config_in_process(*args: str):
    """The same command through typer's test runner (no process start-up)."""
    from typer.testing import CliRunner

    from spacy_lstm_tagger.cli import app

    return CliRunner().invoke(app, ["init-config", *args])


def test_presets_are_the_lstm_tagger_configs():
    """Every config that trains an lstm_tagger is a preset (and so is shipped:
    the package-data pattern is the preset pattern); the baseline is not."""
    lstm_configs = sorted(
        path.stem for path in CONFIGS.glob("*.cfg")
        if any(c.get("factory", "").startswith("lstm_") for c in load_config(path, interpolate=False)["components"].values())
    )
    assert lstm_configs, "no lstm_tagger configs found"
    shipped = sorted(path.stem for path in CONFIGS.glob(presets.PRESET_GLOB))
    assert shipped == lstm_configs, f"configs training an lstm_* component must be named {presets.PRESET_GLOB}"
    file_presets = list(presets.preset_paths())
    assert file_presets == sorted(stem.replace("lstm_tagger_", "", 1) if stem.startswith("lstm_tagger_")
                                  else stem.replace("lstm_", "", 1) for stem in lstm_configs)
    names = presets.preset_names()
    assert names == sorted(file_presets + list(presets.VARIANTS))
    # seven recipes, spaCy's baseline, and the fine-tuned teacher and its student (a recipe each)
    assert len(list(CONFIGS.glob("*.cfg"))) <= 10, "a variant of a shipped config belongs in presets.VARIANTS"
    assert {"efficiency", "accuracy", presets.DEFAULT_PRESET} <= set(names)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf8"))
    setuptools_cfg = pyproject["tool"]["setuptools"]
    assert setuptools_cfg["package-dir"]["spacy_lstm_tagger.configs"] == "configs"
    assert setuptools_cfg["package-data"]["spacy_lstm_tagger.configs"] == [presets.PRESET_GLOB]


def test_pyproject_lists_every_package():
    """pyproject.toml lists the packages by hand (to map configs/ into the
    package): a new subpackage missing there would be left out of the wheel."""
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf8"))["tool"]["setuptools"]["packages"]
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "spacy_lstm_tagger").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found <= set(packages), f"add {sorted(found - set(packages))} to [tool.setuptools] packages"


def test_presets_found_in_wheel_layout(tmp_path, monkeypatch):
    """Installed from a wheel the configs are package data; a file added there
    is a preset without any list to update."""
    package = tmp_path / "spacy_lstm_tagger"
    (package / "configs").mkdir(parents=True)
    for name in ("lstm_tagger_efficiency.cfg", "lstm_tagger_tiny.cfg", "lstm_joint_tagger.cfg", "spacy_tagger.cfg"):
        (package / "configs" / name).write_text((CONFIGS / "lstm_tagger_efficiency.cfg").read_text())
    monkeypatch.setattr(presets, "_PACKAGE_DIR", package)
    assert presets.configs_dir() == package / "configs"
    assert list(presets.preset_paths()) == ["efficiency", "joint_tagger", "tiny"]
    monkeypatch.setattr(presets, "_PACKAGE_DIR", tmp_path / "nowhere" / "spacy_lstm_tagger")
    with pytest.raises(FileNotFoundError, match="installation is incomplete"):
        presets.configs_dir()


def test_init_config_writes_the_preset_with_lang_and_overrides(tmp_path):
    out = tmp_path / "fi.cfg"
    proc = init_config(str(out), "--preset", "accuracy", "--lang", "fi", "--paths.train", "corpus/train.spacy",
                       "--training.max_steps", "2000", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = load_config(out, interpolate=False)
    expected = load_config(CONFIGS / "lstm_tagger_accuracy.cfg", interpolate=False)
    assert written["nlp"]["lang"] == "fi"
    assert written["paths"]["train"] == "corpus/train.spacy"
    assert written["training"]["max_steps"] == 2000
    for section, key in (("nlp", "lang"), ("paths", "train"), ("training", "max_steps")):
        written[section][key] = expected[section][key]
    assert written == expected  # nothing else changed
    text = out.read_text(encoding="utf8")
    assert text.startswith("# spacy-lstm-tagger") and "preset 'accuracy'" in text
    assert "# lstm_tagger, accuracy" in text  # the shipped file's description is kept
    # the written config builds a pipeline in that language
    nlp = spacy.util.load_model_from_config(load_config(out), auto_fill=True)
    assert nlp.lang == "fi" and nlp.pipe_names == ["lstm_tagger"]


def test_init_config_default_preset_to_stdout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    proc = init_config_in_process("-")
    assert proc.exit_code == 0, proc.output
    config = spacy.util.Config().from_str(proc.stdout, interpolate=False)
    expected = load_config(CONFIGS / f"lstm_tagger_{presets.DEFAULT_PRESET}.cfg", interpolate=False)
    assert config == expected
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args,message",
    [
        (["--preset", "nope"], "Unknown preset 'nope': choose one of accuracy, "),
        (["--lang", "xx_not_a_lang"], "Unknown language code 'xx_not_a_lang'"),
        (["--training.max_stepz", "3"], "has no setting 'training.max_stepz'"),
        (["--components.lstm_tagger.model.hidden_size", "big"], "hidden_size"),
    ],
)
def test_init_config_bad_input_is_a_clear_error(tmp_path, args, message):
    proc = init_config_in_process(str(tmp_path / "x.cfg"), *args)
    assert proc.exit_code == 1, proc.output
    out = proc.output
    assert proc.exception is None or isinstance(proc.exception, SystemExit), proc.exception
    assert message in " ".join(out.split())
    assert not (tmp_path / "x.cfg").exists()


def test_variants_change_only_their_settings():
    """A variant is its base config with exactly its settings changed (and a
    key removed where the setting says REMOVE): nothing else moves."""
    for name, variant in presets.VARIANTS.items():
        assert variant.base in presets.preset_paths(), f"{name}: base {variant.base!r} is not a shipped file"
        base = presets.base_config(variant.base)
        derived = presets.base_config(name)
        for key, value in variant.settings.items():
            *sections, last = key.split(".")
            section = derived
            for part in sections:
                section = section[part]
            if value is presets.REMOVE:
                assert last not in section, (name, key)
            else:
                assert section[last] == value, (name, key)
        untouched = [s for s in base if not any(k == s or k.startswith(s + ".") for k in variant.settings)]
        assert untouched, name
        for section in untouched:
            assert derived[section] == base[section], (name, section)
    assert presets.base_config("efficiency_crf")["components"]["lstm_tagger"]["model"]["crf"] is True
    text = presets.init_config("efficiency_crf", "-")
    assert "Derived from preset 'small'" in text and "crf = true" in text


@pytest.mark.parametrize("name", presets.preset_names())
def test_every_preset_builds(name, tmp_path, monkeypatch):
    """What a pip user gets from each preset is a config spaCy can build, in
    another language too."""
    if "source = ${paths." in presets.preset_path(name).read_text(encoding="utf8"):
        pytest.skip(f"preset {name} sources a prepared pipeline (scripts/prepare_pretrained.py) to build")
    built = []
    real_validate = presets.validate_config
    monkeypatch.setattr(presets, "validate_config", lambda config: built.append(real_validate(config)))
    text = presets.init_config(name, tmp_path / "out.cfg", lang="nl")  # builds the pipeline to validate it
    assert built, "init_config did not validate the config"
    assert (tmp_path / "out.cfg").read_text(encoding="utf8") == text
    assert load_config(tmp_path / "out.cfg")["nlp"]["lang"] == "nl"
