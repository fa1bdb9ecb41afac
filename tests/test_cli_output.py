"""`tag` output and the command line's edges: CoNLL-U
out (valid UD, input columns kept), `-o -`, token offsets, --probabilities,
clean errors, per-batch progress, and the documented spaCy/Thinc behaviours."""
import json
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy.training.converters import conllu_to_docs
from typer.testing import CliRunner

from spacy_lstm_tagger.cli import app
from spacy_lstm_tagger.tagging import engines, read_output_records, tag_corpus

from conftest import TINY_MODEL, TRAIN_DATA, make_examples, train_pipeline, train_tiny

UPOS = {"PRP": "PRON", "VBP": "VERB", "JJ": "ADJ", "NNS": "NOUN", "VB": "VERB", "NN": "NOUN", "VBD": "VERB",
        "DT": "DET", "RB": "ADV"}
FEATS = {"PRP": "Case=Nom|Person=3", "NNS": "Number=Plur", "NN": "Number=Sing", "VBD": "Tense=Past"}
# odd whitespace on purpose: leading, double spaces, a tab, trailing
TEXTS = ["I like green eggs", "  She  ate the ham.\tquickly ", "They like eggs", "Eat"]
CONLLU = """# newdoc id = d1
# sent_id = a
# text = I like ham.
1\tI\tI\tPRON\tPRP\tCase=Nom\t2\tnsubj\t_\t_
2\tlike\tlike\tVERB\tVBP\t_\t0\troot\t_\t_
3\tham\tham\tNOUN\tNN\t_\t2\tobj\t_\tSpaceAfter=No
4\t.\t.\tPUNCT\t.\t_\t2\tpunct\t_\t_

1-2\tgonna\t_\t_\t_\t_\t_\t_\t_\t_
1\tgon\tgo\tVERB\tVBG\t_\t0\troot\t_\t_
2\tna\tto\tPART\tTO\t_\t1\tmark\t_\t_
3\teat\teat\tVERB\tVB\t_\t1\txcomp\t_\tSpaceAfter=No
3.1\tx\tx\t_\t_\t_\t_\t_\t1:dep\t_
4\t!\t!\tPUNCT\t.\t_\t1\tpunct\t_\t_

# newdoc id = d2
# sent_id = c
# text = Eat blue ham
1\tEat\teat\tVERB\tVB\t_\t0\troot\t_\t_
2\tblue\tblue\tADJ\tJJ\t_\t3\tamod\t_\t_
3\tham\tham\tNOUN\tNN\t_\t1\tobj\t_\t_

"""


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def check_ud(text: str) -> list:
    """A strict check of the CoNLL-U format (UD v2): comments before the
    token lines, 10 non-empty tab-separated columns without surrounding
    whitespace, word ids 1..n, ranges and empty nodes well placed, a blank
    line after every sentence, unique ``# sent_id`` and a ``# text`` equal
    to the surface tokens joined by SpaceAfter. Returns the sentences' rows."""
    assert text.endswith("\n\n") and "\n\n\n" not in text and not text.startswith("\n")
    sentences, sent_ids = [], set()
    for block in text[:-2].split("\n\n"):
        lines = block.split("\n")
        comments = [line for line in lines if line.startswith("#")]
        assert lines[:len(comments)] == comments, block
        rows = [line.split("\t") for line in lines[len(comments):]]
        assert rows, block
        keys = {c[1:].partition("=")[0].strip(): c.partition("=")[2].strip() for c in comments}
        assert keys.get("sent_id") and keys["sent_id"] not in sent_ids and " " not in keys["sent_id"]
        sent_ids.add(keys["sent_id"])
        n, surface, covered = 0, [], 0
        for cols in rows:
            assert len(cols) == 10 and all(c and c == c.strip() for c in cols), cols
            if "-" in cols[0]:
                start, end = map(int, cols[0].split("-"))
                assert start == n + 1 and end > start
                covered = end
                surface.append(cols)
            elif "." in cols[0]:
                assert int(cols[0].split(".")[0]) == n
            else:
                n += 1
                assert int(cols[0]) == n
                assert cols[6] == "_" or 0 <= int(cols[6]) <= len([r for r in rows if r[0].isdigit()])
                if n > covered:
                    surface.append(cols)
        rebuilt = "".join(c[1] + ("" if "SpaceAfter=No" in c[9].split("|") else " ") for c in surface).rstrip(" ")
        assert keys.get("text") == rebuilt
        sentences.append(rows)
    return sentences


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli_output")
    train_tiny().to_disk(path / "model")
    # the joint tagger: tags, UPOS and FEATS from one model
    nlp = spacy.blank("en")
    nlp.add_pipe("lstm_joint_tagger", config={"model": TINY_MODEL})
    train_pipeline(nlp, 60, [(t, {**a, "pos": [UPOS[x] for x in a["tags"]],
                                  "morphs": [FEATS.get(x, "") for x in a["tags"]]}) for t, a in TRAIN_DATA])
    nlp.to_disk(path / "model_pos")
    (path / "in.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf8")
    (path / "in.conllu").write_text(CONLLU, encoding="utf8")
    return path


# --- CoNLL-U out, stdout, offsets, probabilities -----------------------

def test_conllu_from_text_is_valid_ud(work, tmp_path):
    """One sentence per line (--sentences line), so every CoNLL-U sentence
    is one JSONL record (the sentencizer's split: test_tag_sentences.py)."""
    out = tmp_path / "out"
    result = invoke("tag", work / "model", work / "in.txt", "-o", out, "-f", "conllu", "-f", "jsonl",
                    "--partition-size", "3", "--sentences", "line")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("part-*")) == [
        "part-00000.conllu", "part-00000.jsonl", "part-00001.conllu", "part-00001.jsonl"]
    text = "".join((out / f"part-0000{i}.conllu").read_text(encoding="utf8") for i in range(2))
    sentences = check_ud(text)
    records = read_output_records(out)
    words = [[(t, tag) for t, tag in zip(r["tokens"], r["tags"]) if t.strip()] for r in records]
    assert [[(c[1], c[4]) for c in rows] for rows in sentences] == words
    # spaCy's own CoNLL-U reader gets the same words, tags and text back
    docs = list(conllu_to_docs(text, n_sents=1, no_print=True))
    assert [[(t.text, t.tag_) for t in doc] for doc in docs] == words
    assert "SpacesBefore=\\s\\s|SpacesAfter=\\s\\s" in text and "SpacesAfter=\\t" in text
    assert "# text = She ate the ham. quickly" in text


def test_conllu_keeps_input_columns_and_sentences(work, tmp_path):
    out = tmp_path / "out"
    result = invoke("tag", work / "model_pos", work / "in.conllu", "-o", out, "-f", "conllu", "-f", "jsonl",
                    "--conllu-docs", "newdoc")
    assert result.exit_code == 0, result.output
    text = (out / "part-00000.conllu").read_text(encoding="utf8")
    sentences = check_ud(text)
    records = read_output_records(out)
    assert [r["newdoc_id"] for r in records] == ["d1", "d2"]
    assert [r["sent_starts"] for r in records] == [[0, 4], [0]]  # sentence boundaries kept
    assert len(sentences) == 3
    out_lines, in_lines = text.split("\n"), CONLLU.split("\n")
    added = [line for line in out_lines if line not in in_lines]
    # the second input sentence had no sent_id / text: they are added, nothing else
    assert [line for line in added if line.startswith("#")] == ["# sent_id = in.conllu:1-2", "# text = gonna eat!"]
    assert len(out_lines) == len(in_lines) + 2
    tags = [t for r in records for t in r["tags"]]
    pos = [p for r in records for p in r["pos"]]
    feats = [m or "_" for r in records for m in r["morphs"]]
    assert set(feats) & set(FEATS.values())  # the FEATS head predicted something
    word_rows = [line.split("\t") for line in out_lines if line.split("\t")[0].isdigit()]
    input_rows = [line.split("\t") for line in in_lines if line.split("\t")[0].isdigit()]
    assert [c[4] for c in word_rows] == tags and [c[3] for c in word_rows] == pos  # XPOS, UPOS predicted
    # FEATS predicted where the head set Token.morph, else the input's
    assert [c[5] for c in word_rows] == [f if f != "_" else old[5] for f, old in zip(feats, input_rows)]
    for new, old in zip(word_rows, input_rows):
        assert new[:3] + new[6:] == old[:3] + old[6:]  # every other column as in the input
    assert "1-2\tgonna\t_" in text and "3.1\tx\tx\t_" in text


def test_conllu_feats_from_token_morph(work):
    from spacy_lstm_tagger.tagging.writers import doc_conllu

    nlp = spacy.load(work / "model")
    doc = nlp("She ate ham")
    doc[0].set_morph("Case=Nom|Person=3")
    rows = [line.split("\t") for line in doc_conllu(doc).splitlines() if line[:1].isdigit()]
    assert [c[5] for c in rows] == ["Case=Nom|Person=3", "_", "_"]


def test_conllu_of_a_retokenized_doc_gets_new_lines(work):
    from spacy_lstm_tagger.tagging.writers import doc_conllu

    nlp = spacy.load(work / "model")
    doc = nlp(Doc(nlp.vocab, words=["gon", "na", "eat"], spaces=[False, True, False]))
    doc.user_data["input"] = {"source": "x.conllu", "line": 1,
                              "conllu": [CONLLU.split("\n\n")[1].split("\n")]}
    with doc.retokenize() as retokenizer:
        retokenizer.merge(doc[0:2])
    rows = check_ud(doc_conllu(doc))[0]
    assert [c[1] for c in rows] == ["gonna", "eat"]


@pytest.mark.parametrize("fmt", ["jsonl", "conllu"])
def test_stdout_streams_what_the_directory_gets(work, tmp_path, fmt):
    out = tmp_path / fmt
    assert invoke("tag", work / "model", work / "in.txt", "-o", out, "-f", fmt).exit_code == 0
    expected = (out / f"part-00000.{fmt}").read_bytes()
    args = ["tag", str(work / "model"), str(work / "in.txt"), "-o", "-", "-f", fmt, "--batch-size", "2"]
    if fmt == "jsonl":  # in this process
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert result.stdout_bytes == expected
        assert "Tagged 4 docs" in result.stderr
    else:  # a real process writing to a pipe
        result = subprocess.run([sys.executable, "-m", "spacy_lstm_tagger", *args], capture_output=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout == expected
        assert b"Tagged 4 docs" in result.stderr
    assert not list(Path.cwd().glob("manifest.json"))


def test_without_output_jsonl_goes_to_stdout(work, tmp_path, monkeypatch):
    """`tag MODEL in.txt`: no --output is `-o -`, and its default format is
    JSONL (a directory's is .spacy); nothing is written to the directory."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["tag", str(work / "model"), str(work / "in.txt")])
    assert result.exit_code == 0, result.output
    streamed = CliRunner().invoke(app, ["tag", str(work / "model"), str(work / "in.txt"), "-o", "-", "-f", "jsonl"])
    assert result.stdout_bytes == streamed.stdout_bytes
    assert [json.loads(line)["text"] for line in result.stdout.splitlines()] == TEXTS
    assert "Tagged 4 docs" in result.stderr
    assert list(tmp_path.iterdir()) == []
    conllu = CliRunner().invoke(app, ["tag", str(work / "model"), str(work / "in.txt"), "-f", "conllu"])
    assert conllu.exit_code == 0 and conllu.stdout.startswith("# newdoc id = in.txt:1\n"), conllu.output


def test_stdout_refuses_binary_and_dask(work):
    result = invoke("tag", work / "model", work / "in.txt", "-f", "spacy")
    assert result.exit_code == 1 and "--format jsonl or --format conllu" in " ".join(result.output.split())
    assert "use --output DIR for .spacy files" in " ".join(result.output.split())
    result = invoke("tag", work / "model", work / "in.txt", "-o", "-", "-f", "jsonl", "--engine", "dask")
    assert result.exit_code == 1 and "local engine" in result.output


def test_jsonl_offsets_and_probabilities(work, tmp_path):
    out = tmp_path / "out"
    result = invoke("tag", work / "model", work / "in.txt", "-o", out, "-f", "jsonl", "--probabilities")
    assert result.exit_code == 0, result.output
    records = read_output_records(out)
    nlp = spacy.load(work / "model")
    pipe = nlp.get_pipe("lstm_tagger")
    for record, text in zip(records, TEXTS):
        assert record["text"] == text
        assert [text[start:end] for start, end in record["offsets"]] == record["tokens"]
        dist = pipe.tag_probabilities([nlp.make_doc(text)])[0]
        labels = pipe.labels
        assert record["tag_prob"] == pytest.approx([float(dist[i, labels.index(t)])
                                                    for i, t in enumerate(record["tags"])])
        assert [[a[0] for a in alts] for alts in record["tag_alternatives"]] == [
            [labels[j] for j in numpy.argsort(-row, kind="stable")[:3]] for row in dist]
    # the same output directory without --probabilities: a different run, refused
    result = invoke("tag", work / "model", work / "in.txt", "-o", out, "-f", "jsonl")
    assert result.exit_code == 1 and "probabilities" in result.output
    # stdout too, and the spaCy tagger has no probabilities to give
    result = invoke("tag", work / "model", work / "in.txt", "-o", tmp_path / "plain", "-f", "jsonl")
    assert "tag_prob" not in read_output_records(tmp_path / "plain")[0]


def test_probabilities_need_an_lstm_tagger(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("tagger")
    nlp.initialize(lambda: [__import__("spacy").training.Example.from_dict(nlp.make_doc("a b"),
                                                                           {"tags": ["X", "Y"]})])
    nlp.to_disk(tmp_path / "spacy_tagger")
    (tmp_path / "in.txt").write_text("a b\n")
    result = invoke("tag", tmp_path / "spacy_tagger", tmp_path / "in.txt", "-o", tmp_path / "out",
                    "--probabilities")
    assert result.exit_code == 1 and "--probabilities needs an lstm_tagger" in result.output
    assert not (tmp_path / "out").exists()


def test_probabilities_of_two_taggers_with_the_same_names_is_an_error(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("lstm_tagger", name="a", config={"model": TINY_MODEL})
    nlp.add_pipe("lstm_tagger", name="b", config={"model": TINY_MODEL})
    nlp.initialize(lambda: make_examples(nlp))
    nlp.to_disk(tmp_path / "two")
    (tmp_path / "in.txt").write_text("I like ham\n")
    result = invoke("tag", tmp_path / "two", tmp_path / "in.txt", "-o", tmp_path / "out", "--probabilities")
    assert result.exit_code == 1 and "'a' and 'b'" in result.output and "distinct prob_attr" in result.output


# --- clean errors ---------------------------------------------------------

def assert_clean_failure(result, message):
    assert result.exit_code == 1, result.output
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)


def test_a_directory_that_is_not_a_pipeline(work, tmp_path):
    (tmp_path / "not_a_model").mkdir()
    (tmp_path / "run" / "model-best").mkdir(parents=True)
    (tmp_path / "run" / "model-best" / "config.cfg").write_text("")
    for model, message in [(tmp_path / "not_a_model", "is not a spaCy pipeline directory (it has no config.cfg)"),
                           (tmp_path / "run", "did you mean"), (work / "in.txt", "is a file, not a spaCy pipeline")]:
        result = invoke("tag", model, work / "in.txt", "-o", tmp_path / "out")
        assert_clean_failure(result, message)
        assert not (tmp_path / "out").exists()  # no stray manifest.json
        result = invoke("confusion", model, work / "in.conllu", "-o", tmp_path / "conf")
        assert_clean_failure(result, message)


def test_a_pipeline_that_fails_to_load_leaves_nothing(work, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.cfg").write_text("[nlp]\nlang = \"xx_no_such_lang\"\n")
    result = invoke("tag", broken, work / "in.txt", "-o", tmp_path / "out")
    assert_clean_failure(result, "Could not load the pipeline")
    assert not (tmp_path / "out").exists()


def test_a_pipeline_without_a_tagger(work, tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.to_disk(tmp_path / "no_tagger")
    result = invoke("tag", tmp_path / "no_tagger", work / "in.txt", "-o", tmp_path / "out")
    assert_clean_failure(result, "has no tagger: none of its components (sentencizer) sets Token.tag_")
    assert not (tmp_path / "out").exists()
    result = invoke("confusion", tmp_path / "no_tagger", work / "in.conllu", "-o", tmp_path / "conf")
    assert_clean_failure(result, "has no tagger")


def test_confusion_missing_model(work, tmp_path):
    result = invoke("confusion", tmp_path / "nope", work / "in.conllu", "-o", tmp_path / "conf")
    assert_clean_failure(result, "Model not found")


def test_confusion_without_matplotlib(work, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    result = invoke("confusion", work / "model", work / "in.conllu", "-o", tmp_path / "conf")
    assert_clean_failure(result, 'needs matplotlib, which is not installed: pip install "spacy-lstm-tagger[plot]"')
    assert not (tmp_path / "conf").exists()
    result = invoke("confusion", work / "model", work / "in.conllu", "-o", tmp_path / "conf", "--no-plot")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "conf" / "confusion.json").exists() and not (tmp_path / "conf" / "confusion.png").exists()
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert 'plot = ["matplotlib' in pyproject


def test_version():
    from spacy_lstm_tagger import __version__

    result = invoke("--version")
    assert result.exit_code == 0 and result.output.startswith(f"spacy-lstm-tagger {__version__} (spaCy ")


# --- progress per batch ------------------------------------------------------

def recording_progress(updates: list):
    """A stand-in for the engines' progress bar that records each update."""

    class Bar:
        def __init__(self, total, progress, desc):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            updates.append(n)

    return Bar


@pytest.mark.parametrize("n_process", [1, 2])
def test_progress_moves_per_batch(work, tmp_path, monkeypatch, n_process):
    updates = []
    monkeypatch.setattr(engines, "_progress", recording_progress(updates))
    corpus = tmp_path / "many.txt"
    corpus.write_text("".join(f"I like ham {i}\n" for i in range(50)))
    tag_corpus(work / "model", [corpus], tmp_path / "out", formats="jsonl", partition_size=25, batch_size=4,
               n_process=n_process)
    assert sum(updates) == 50
    # every batch, not once per partition (worker processes report theirs)
    assert sorted(n for n in updates if n) == [1] * 2 + [4] * 12


def test_dask_progress_moves_per_batch(work, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    from spacy_lstm_tagger.tagging import dask_engine

    updates = []
    monkeypatch.setattr(dask_engine, "_progress", recording_progress(updates))
    corpus = tmp_path / "many.txt"
    corpus.write_text("".join(f"I like ham {i}\n" for i in range(400)))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        stats = tag_corpus(work / "model", [corpus], tmp_path / "out", formats="jsonl", partition_size=200,
                           batch_size=8, engine="dask", client=client)
    assert stats.n_docs == 400 and sum(updates) == 400
    assert len(updates) > 10 and max(updates) < 200  # batches reported from the worker, not whole partitions


def test_progress_bar_shows_rate_and_eta(work, tmp_path, capsys):
    tag_corpus(work / "model", [work / "in.txt"], tmp_path / "out", formats="jsonl", batch_size=1, progress=True)
    err = capsys.readouterr().err
    assert "4/4" in err and "doc/s" in err and "<" in err  # elapsed<remaining, rate


# --- spaCy's own commands with the plugin -----------------------------

def test_spacy_apply_works_with_the_plugin(work, tmp_path):
    from spacy.cli.apply import apply
    from spacy.tokens import DocBin

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.jsonl").write_text(json.dumps({"text": "She ate the ham quickly"}) + "\n")
    apply(tmp_path / "data", tmp_path / "out.spacy", str(work / "model"), "text", 2, 1)
    nlp = spacy.load(work / "model")
    docs = list(DocBin().from_disk(tmp_path / "out.spacy").get_docs(nlp.vocab))
    assert [t.tag_ for t in docs[0]] == ["PRP", "VBD", "DT", "NN", "RB"]


def test_spacy_debug_data_has_no_tagger_section_for_lstm_tagger(work, tmp_path, capsys):
    from spacy.cli.debug_data import debug_data
    from spacy.tokens import DocBin

    nlp = spacy.load(work / "model")
    db = DocBin()
    for text, annots in TRAIN_DATA:
        doc = nlp.make_doc(text)
        for token, tag in zip(doc, annots["tags"]):
            token.tag_ = tag
        db.add(doc)
    db.to_disk(tmp_path / "train.spacy")
    config = nlp.config.copy()
    config["paths"]["train"] = config["paths"]["dev"] = str(tmp_path / "train.spacy")
    config.to_disk(tmp_path / "config.cfg")
    try:
        debug_data(tmp_path / "config.cfg", silent=False)
    except SystemExit:  # it exits 1 on this tiny corpus's errors
        pass
    out = capsys.readouterr().out
    assert "Training stats" in out and "Part-of-speech Tagging" not in out


def test_gpu_id_needs_cupy_even_with_a_torch_model(monkeypatch):
    """What `--gpu-id N` calls (``thinc.api.require_gpu``) on Linux needs
    CuPy, whatever the model's layers are written in."""
    import platform

    import thinc.util

    if platform.system() == "Darwin":
        pytest.skip("on macOS, Thinc uses PyTorch's MPS instead")
    monkeypatch.setattr(thinc.util, "has_cupy", False)
    with pytest.raises(ValueError, match="CuPy is not installed"):
        thinc.util.require_gpu(0)
