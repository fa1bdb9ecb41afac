"""What a text line becomes (`tag --sentences`): by default its sentences,
split by spaCy's sentencizer when no component of the pipeline sets
sentence boundaries; with `--sentences line`, one sentence. The tags are
the same either way, CoNLL-U input keeps its sentences, and a resume with
the other mode is refused."""
import json
from pathlib import Path

import pytest
import spacy
from spacy.language import Language
from typer.testing import CliRunner

from spacy_lstm_tagger.cli import app
from spacy_lstm_tagger.tagging import OutputMismatchError, read_output_records, tag_corpus
from spacy_lstm_tagger.tagging.sentences import apply_sentence_mode, sentence_setters

LINES = ["I like green eggs. She ate the ham quickly!", "They like eggs"]
CONLLU = "\n".join(["# sent_id = s1", "1\tEat\teat\tVERB\tVB\t_\t0\troot\t_\t_",
                    "2\t.\t.\tPUNCT\t.\t_\t1\tpunct\t_\t_", "3\tham\tham\tNOUN\tNN\t_\t1\tobj\t_\t_"]) + "\n\n"


@Language.component("split_at_semicolons", assigns=["token.is_sent_start"])
def split_at_semicolons(doc):
    """A pipeline's own sentence boundaries: after each ';' only."""
    for token in doc[1:]:
        token.is_sent_start = doc[token.i - 1].text == ";"
    doc[0].is_sent_start = True
    return doc


def tag(*args):
    result = CliRunner().invoke(app, ["tag", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result


def conllu_sentences(text: str):
    return [[line.split("\t")[1:5:3] for line in block.split("\n") if line[:1].isdigit()]
            for block in text.strip("\n").split("\n\n")]


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    (tmp_path / "in.txt").write_text("\n".join(LINES) + "\n", encoding="utf8")
    return tmp_path / "in.txt"


def test_a_line_of_two_sentences_is_two_conllu_sentences(trained_model_dir, inputs):
    split = tag(trained_model_dir, inputs, "-f", "conllu").stdout
    line = tag(trained_model_dir, inputs, "-f", "conllu", "--sentences", "line").stdout
    assert [len(s) for s in conllu_sentences(split)] == [5, 6, 3]
    assert [len(s) for s in conllu_sentences(line)] == [11, 3]
    assert "# sent_id = in.txt:1-1\n# text = I like green eggs." in split
    assert "# sent_id = in.txt:1-2\n# text = She ate the ham quickly!" in split
    # the sentencizer runs after the tagger: the same words get the same tags
    assert sum(conllu_sentences(split), []) == sum(conllu_sentences(line), [])
    records = [json.loads(r) for r in tag(trained_model_dir, inputs).stdout.splitlines()]
    assert [r["sent_starts"] for r in records] == [[0, 5], [0]]  # still one Doc per line


def test_the_pipelines_own_sentence_boundaries_are_kept(trained_model_dir, tmp_path):
    nlp = spacy.load(trained_model_dir)
    nlp.add_pipe("split_at_semicolons")
    nlp.to_disk(tmp_path / "model")
    assert sentence_setters(nlp) == ["split_at_semicolons"]
    assert "sentencizer" not in apply_sentence_mode(nlp, "sentencizer").pipe_names
    (tmp_path / "in.txt").write_text("I like eggs. She ate ham ; They like eggs\n", encoding="utf8")
    out = tag(tmp_path / "model", tmp_path / "in.txt", "-f", "conllu").stdout
    assert [len(s) for s in conllu_sentences(out)] == [8, 3]  # split at ';', not at '.'


def test_conllu_input_keeps_its_sentences(trained_model_dir, tmp_path):
    (tmp_path / "in.conllu").write_text(CONLLU, encoding="utf8")
    records = [json.loads(r) for r in tag(trained_model_dir, tmp_path / "in.conllu").stdout.splitlines()]
    assert [r["sent_starts"] for r in records] == [[0]]  # the '.' inside the sentence splits nothing


def test_resume_with_the_other_mode_is_refused(trained_model_dir, inputs, tmp_path):
    out = tmp_path / "out"
    tag_corpus(trained_model_dir, [inputs], out, formats="jsonl", progress=False)
    assert [r["sent_starts"] for r in read_output_records(out)] == [[0, 5], [0]]
    with pytest.raises(OutputMismatchError, match="sentences: 'sentencizer' there, 'line' now"):
        tag_corpus(trained_model_dir, [inputs], out, formats="jsonl", progress=False, sentences="line")


def test_unknown_mode_is_an_error(trained_model_dir, inputs, tmp_path):
    with pytest.raises(ValueError, match="Unknown --sentences 'words'"):
        tag_corpus(trained_model_dir, [inputs], tmp_path / "out", sentences="words")
