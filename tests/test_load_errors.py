"""A pipeline that fails to load names the file it was reading and the
pipeline it belongs to: spaCy's own errors, such as
"Expected object or value" for a truncated ``vocab/strings.json``, name
neither."""
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spacy_lstm_tagger.cli import app
from spacy_lstm_tagger.ensemble import assemble
from spacy_lstm_tagger.loading import ModelError, failing_file, load_pipeline

DAMAGED_FILES = ["vocab/strings.json", "lstm_tagger/cfg", "tokenizer", "meta.json", "vocab/vectors.cfg"]


def truncated_copy(src: Path, dst: Path, relative: str) -> Path:
    """A copy of the pipeline with one file truncated to nothing."""
    shutil.copytree(src, dst)
    file = dst / relative
    file.write_bytes(b"")
    return file


@pytest.mark.parametrize("relative", DAMAGED_FILES)
def test_a_truncated_file_is_named_with_its_pipeline(trained_model_dir, tmp_path, relative):
    model = tmp_path / "model"
    file = truncated_copy(trained_model_dir, model, relative)
    with pytest.raises(ModelError) as err:
        load_pipeline(model)
    message = str(err.value)
    assert f"Could not load the pipeline {model} (reading {file})" in message


def test_the_tag_command_names_the_file_in_one_line(trained_model_dir, tmp_path):
    model = tmp_path / "model"
    file = truncated_copy(trained_model_dir, model, "vocab/strings.json")
    (tmp_path / "in.txt").write_text("I like ham\n", encoding="utf8")
    result = CliRunner().invoke(app, ["tag", str(model), str(tmp_path / "in.txt"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert f"(reading {file}): Expected object or value" in text, result.output
    assert not (tmp_path / "out").exists()


def test_an_ensemble_member_names_the_file(trained_model_dir, tmp_path):
    member = tmp_path / "member"
    file = truncated_copy(trained_model_dir, member, "vocab/strings.json")
    with pytest.raises(ValueError, match=f"Could not load the ensemble member {member} \\(reading {file}\\)"):
        assemble([trained_model_dir, member])


def test_no_file_is_blamed_when_none_was_being_read(tmp_path):
    """An error raised outside any file of the pipeline names none."""
    (tmp_path / "config.cfg").write_text("")
    try:
        raise ValueError("no file here")
    except ValueError as err:
        assert failing_file(err, tmp_path) is None
