"""`python -m spacy_lstm_tagger convert`: CoNLL-U -> .spacy, one route for pip
users and for the project's `convert` step (which runs the same command),
an XPOS `_` kept as a missing tag, dev held out when there is none."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import spacy
from spacy.tokens import DocBin
from spacy.training.converters import conllu_to_docs
from typer.testing import CliRunner

from spacy_lstm_tagger.cli import app

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def flat(output: str) -> str:
    """The CLI's messages without the line wrapping of the terminal."""
    return " ".join(output.split())


def conllu_sentence(words, xpos, upos="NOUN") -> str:
    lines = [f"# text = {' '.join(words)}"]
    lines += [f"{i}\t{w}\t{w}\t{upos}\t{x}\t_\t{0 if i == 1 else 1}\t{'root' if i == 1 else 'dep'}\t_\t_"
              for i, (w, x) in enumerate(zip(words, xpos), 1)]
    return "\n".join(lines)


def write_conllu(path: Path, sentences) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(sentences) + "\n\n", encoding="utf8")
    return path


def docbin_sentences(path: Path):
    docs = DocBin().from_disk(path).get_docs(spacy.blank("xx").vocab)
    return [[(t.text, t.tag_) for t in sent] for doc in docs for sent in doc.sents]


def docbin_content(path: Path):
    """Everything a DocBin holds, per Doc (its bytes are not comparable:
    the string table is written in set order)."""
    docs = DocBin(store_user_data=True).from_disk(path).get_docs(spacy.blank("xx").vocab)
    return [(doc.to_json(), [t.tag_ for t in doc], doc.user_data) for doc in docs]


SENTENCES = [conllu_sentence([f"w{i}", "x"], [f"T{i % 3}", "_" if i == 2 else "X"]) for i in range(20)]


def test_cli_and_project_route_give_identical_docbins(tmp_path: Path):
    """A user's `convert IN.conllu OUT.spacy --dev-output DEV.spacy` and the
    project's `convert` step (a treebank without a dev file) write the same
    train and dev corpora, the word with XPOS `_` untagged in both."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "project.yml", project / "project.yml")
    shutil.copytree(ROOT / "spacy_lstm_tagger", project / "spacy_lstm_tagger",
                    ignore=shutil.ignore_patterns("__pycache__"))
    write_conllu(project / "assets" / "xx_tiny-ud-train.conllu", SENTENCES)
    env = dict(os.environ, SPACY_LSTM_TAGGER_EWT_DIR="", OMP_NUM_THREADS="1")
    env.pop("WEASEL_CONFIG_OVERRIDES", None)
    proc = subprocess.run([sys.executable, "-m", "spacy", "project", "run", "convert", ".",
                           "--vars.treebank", "xx_tiny"], cwd=project, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "python -m spacy_lstm_tagger convert assets corpus" in proc.stdout  # the same command

    user = tmp_path / "user"
    source = write_conllu(user / "mine.conllu", SENTENCES)
    result = invoke("convert", source, user / "train.spacy", "--dev-output", user / "dev.spacy")
    assert result.exit_code == 0, result.output
    for role in ("train", "dev"):
        assert docbin_content(user / f"{role}.spacy") == docbin_content(
            project / "corpus" / f"xx_tiny-ud-{role}.spacy"), role
    train = docbin_sentences(user / "train.spacy")
    assert train[2] == [("w2", "T2"), ("x", "")]  # XPOS `_`: a missing tag ...
    spacy_convert = list(conllu_to_docs(SENTENCES[2], n_sents=10, no_print=True))[0]
    assert [t.tag_ for t in spacy_convert] == ["T2", "NOUN"]  # ... where `spacy convert` writes the UPOS


def test_file_holds_out_the_last_sentences_and_keeps_xpos_underscore_missing(tmp_path: Path):
    source = write_conllu(tmp_path / "in.conllu", SENTENCES)
    result = invoke("convert", source, tmp_path / "train.spacy", "-d", tmp_path / "dev.spacy", "-n", "4")
    assert result.exit_code == 0, result.output
    train, dev = docbin_sentences(tmp_path / "train.spacy"), docbin_sentences(tmp_path / "dev.spacy")
    assert [s[0][0] for s in train] == [f"w{i}" for i in range(18)]
    assert [s[0][0] for s in dev] == ["w18", "w19"]
    assert train[2] == [("w2", "T2"), ("x", "")] and train[1] == [("w1", "T1"), ("x", "X")]
    assert len(list(DocBin().from_disk(tmp_path / "train.spacy").get_docs(spacy.blank("xx").vocab))) == 5  # -n 4
    assert "1 of 40 words have XPOS '_'" in flat(result.output)


def test_file_without_dev_output_converts_every_sentence(tmp_path: Path):
    source = write_conllu(tmp_path / "dev.conllu", SENTENCES[:3])
    result = invoke("convert", source, tmp_path / "dev.spacy")
    assert result.exit_code == 0, result.output
    assert [s[0][0] for s in docbin_sentences(tmp_path / "dev.spacy")] == ["w0", "w1", "w2"]


def test_treebank_directory_holds_out_dev_and_removes_a_stale_test_corpus(tmp_path: Path):
    assets, corpus = tmp_path / "assets", tmp_path / "corpus"
    write_conllu(assets / "xx_test-ud-train.conllu", SENTENCES)
    corpus.mkdir()
    (corpus / "xx_test-ud-test.spacy").write_bytes(b"stale")
    result = invoke("convert", assets, corpus)  # the treebank prefix found in the directory
    assert result.exit_code == 0, result.output
    assert "holding out the last 2 of 20 sentences of xx_test-ud-train.conllu as dev" in flat(result.output)
    assert [s[0][0] for s in docbin_sentences(corpus / "xx_test-ud-dev.spacy")] == ["w18", "w19"]
    assert len(docbin_sentences(corpus / "xx_test-ud-train.spacy")) == 18
    assert not (corpus / "xx_test-ud-test.spacy").exists()


def test_treebank_directory_uses_its_dev_and_test_files(tmp_path: Path):
    """With a dev and a test file, each file converts whole, as the file form does."""
    assets, corpus = tmp_path / "assets", tmp_path / "corpus"
    write_conllu(assets / "xx_full-ud-train.conllu", SENTENCES[:12])
    write_conllu(assets / "xx_full-ud-dev.conllu", SENTENCES[12:16])
    write_conllu(assets / "xx_full-ud-test.conllu", SENTENCES[16:])
    result = invoke("convert", assets, corpus, "--treebank", "xx_full")
    assert result.exit_code == 0, result.output
    for role in ("train", "dev", "test"):
        single = tmp_path / f"{role}.spacy"
        assert invoke("convert", assets / f"xx_full-ud-{role}.conllu", single).exit_code == 0
        assert docbin_content(corpus / f"xx_full-ud-{role}.spacy") == docbin_content(single), role
    assert len(docbin_sentences(corpus / "xx_full-ud-dev.spacy")) == 4


def test_without_any_xpos_is_one_clear_line(tmp_path: Path):
    source = write_conllu(tmp_path / "noxpos.conllu", [conllu_sentence(["a", "b"], ["_", "_"])] * 5)
    result = invoke("convert", source, tmp_path / "out.spacy")
    assert result.exit_code == 1
    assert result.output.count("\u2718") == 1  # one message (✘)
    assert "has no XPOS tags: column 5 is '_' on all 10 words" in flat(result.output)
    assert "--tags upos" in result.output and "--vars.tags upos" in result.output  # the way out, both routes
    assert not (tmp_path / "out.spacy").exists()


def test_upos_tags_train_a_treebank_without_xpos(tmp_path: Path):
    """--tags upos: Token.tag_ is the UPOS column for every word (dev and test
    too); a UPOS of '_' is a missing tag; the converter's pos_ is kept."""
    assets, corpus = tmp_path / "assets", tmp_path / "corpus"
    upos = ["NOUN", "VERB", "ADJ"]
    train = [conllu_sentence([f"w{i}", "x"], ["_", "_"], upos=upos[i % 3]) for i in range(19)]
    train.append(conllu_sentence(["w19", "x"], ["_", "_"], upos="_"))
    write_conllu(assets / "xx_upos-ud-train.conllu", train)
    write_conllu(assets / "xx_upos-ud-test.conllu", [conllu_sentence(["t", "u"], ["_", "_"], upos="PROPN")])
    result = invoke("convert", assets, corpus, "--tags", "upos")
    assert result.exit_code == 0, result.output
    tagged = docbin_sentences(corpus / "xx_upos-ud-train.spacy")
    assert tagged[:3] == [[("w0", "NOUN"), ("x", "NOUN")], [("w1", "VERB"), ("x", "VERB")],
                          [("w2", "ADJ"), ("x", "ADJ")]]
    assert docbin_sentences(corpus / "xx_upos-ud-dev.spacy")[-1] == [("w19", ""), ("x", "")]
    assert docbin_sentences(corpus / "xx_upos-ud-test.spacy") == [[("t", "PROPN"), ("u", "PROPN")]]
    doc = next(DocBin().from_disk(corpus / "xx_upos-ud-train.spacy").get_docs(spacy.blank("xx").vocab))
    assert doc[0].pos_ == "NOUN" and doc[0].dep_ == "ROOT"


def test_bad_inputs_are_one_clear_line(tmp_path: Path):
    source = write_conllu(tmp_path / "in.conllu", SENTENCES)
    cases = [
        (["convert", tmp_path / "missing.conllu", tmp_path / "o.spacy"], "missing.conllu not found"),
        (["convert", source, tmp_path / "o.spacy", "-d", tmp_path / "d.spacy", "--heldout", "1.5"],
         "--heldout must be between 0 and 1"),
        (["convert", source, tmp_path], "is a directory: name the .spacy file"),
        (["convert", tmp_path, tmp_path / "corpus"], "expected the files of one UD treebank"),
    ]
    (tmp_path / "aa-ud-train.conllu").write_text(SENTENCES[0] + "\n\n", encoding="utf8")
    (tmp_path / "bb-ud-train.conllu").write_text(SENTENCES[0] + "\n\n", encoding="utf8")
    for args, expected in cases:
        result = invoke(*args)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert expected in flat(result.output), result.output



def test_a_broken_sentence_is_named_not_a_traceback(tmp_path: Path):
    """A sentence cut off mid-way (a head past its last word) or two run
    together (ids restarting) is one line naming the file and the sentence,
    not spaCy's E190 from deep inside Doc.from_array."""
    good = conllu_sentence(["a", "b"], ["X", "Y"])
    cut = "# sent_id = s2\n" + "\n".join(good.split("\n")[1:]).replace("\t0\troot", "\t5\troot")
    doubled = conllu_sentence(["a", "b"], ["X", "Y"]) + "\n" + conllu_sentence(["c"], ["Z"]).split("\n", 1)[1]
    for broken, message in ((cut, "sentence 2 (s2): word 1 has head '5', not a word of the sentence"),
                            (doubled, "sentence 2: word ids are not 1, 2, ..., 3")):
        path = write_conllu(tmp_path / "in.conllu", [good, broken])
        result = invoke("convert", path, tmp_path / "out.spacy")
        assert result.exit_code == 1, result.output
        assert message in flat(result.output) and "Traceback" not in result.output
        assert not (tmp_path / "out.spacy").exists()
