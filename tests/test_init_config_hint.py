"""`init-config`'s "Train it" hint (on the console and in the config's
header) names the corpus paths the command gave and asks only for the rest."""
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spacy_lstm_tagger.cli import app


def init_config(*args):
    result = CliRunner().invoke(app, ["init-config", *map(str, args)])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def header_hint(path: Path) -> str:
    return next(line for line in path.read_text(encoding="utf8").splitlines() if line.startswith("# Train:"))


@pytest.mark.parametrize("given,asked,named", [
    ([], ["--paths.train TRAIN.spacy", "--paths.dev DEV.spacy"], []),
    (["--paths.train", "corpus/my-train.spacy"], ["--paths.dev DEV.spacy"], ["paths.train = corpus/my-train.spacy"]),
    (["--paths.train", "t.spacy", "--paths.dev", "d.spacy"], [], ["paths.train = t.spacy, paths.dev = d.spacy"]),
])
def test_hint_asks_only_for_the_missing_paths(tmp_path: Path, given, asked, named):
    out = tmp_path / "my.cfg"
    console = init_config(out, "--preset", "efficiency", *given)
    header = header_hint(out)
    for text in (console, header):
        assert f"python -m spacy train {out}" in text
        for placeholder in ("--paths.train TRAIN.spacy", "--paths.dev DEV.spacy"):
            assert (placeholder in text) == (placeholder in asked), text
        for value in named:
            assert value in text, text
    assert f"Train it: python -m spacy train {out}" in console
    assert header.startswith(f"# Train: python -m spacy train {out}")


def test_hint_on_stdout_names_this_cfg():
    out = init_config("-", "--paths.dev", "dev.spacy")
    assert "# Train: python -m spacy train THIS.cfg --paths.train TRAIN.spacy (the config has paths.dev = dev.spacy)" in out
