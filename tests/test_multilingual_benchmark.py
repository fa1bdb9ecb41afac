"""benchmarks/multilingual.py on a tiny slice of one ud-small treebank: the
train/dev split (last 10% held out, no overlap, eval untouched), the results
JSON's schema and resuming a finished run."""
import argparse
import importlib.util
from pathlib import Path

import pytest
import spacy
import srsly
from spacy.tokens import DocBin

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT.parent / "shared" / "data" / "ud-small"
TREEBANK = "nl_alpino"

_spec = importlib.util.spec_from_file_location("multilingual_benchmark", ROOT / "benchmarks" / "multilingual.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

needs_data = pytest.mark.skipif(
    not (DATA_DIR / TREEBANK / f"{TREEBANK}-ud-dev.conllu").is_file(),
    reason=f"the ud-small treebanks are not at {DATA_DIR} (../shared is absent)",
)


def _sentence_words(block: str):
    return [cols[1] for cols in (line.split("\t") for line in block.split("\n"))
            if len(cols) == 10 and cols[0].isdigit()]


def _docbin_sentences(path: Path):
    nlp = spacy.blank("nl")
    return [[t.text for t in sent] for doc in DocBin().from_disk(path).get_docs(nlp.vocab) for sent in doc.sents]


def test_split_holds_out_the_last_tenth():
    sentences = [f"# sent_id = {i}\n1\tw{i}\t_\tX\tX\t_\t0\troot\t_\t_" for i in range(30)]
    train, dev = bench.split_train_dev(sentences)
    assert train == sentences[:27] and dev == sentences[27:]
    assert bench.split_train_dev(sentences[:4])[1] == sentences[3:4]  # at least one dev sentence
    with pytest.raises(ValueError, match="at least 2 sentences"):
        bench.split_train_dev(sentences[:1])


def test_best_checkpoint_is_the_one_spacy_saved():
    """spaCy saves model-best on every score equal to the best so far: the last tie."""
    log = [{"epoch": 0, "step": step, "score": score, "seconds": step / 10, "scores": {"tag_acc": score, "speed": 1.0}}
           for step, score in ((0, 0.2), (100, 0.8), (200, 0.9), (300, 0.85), (400, 0.9), (500, 0.7))]
    best = bench.harness.best_checkpoint(log)
    assert (best["best_step"], best["train_seconds"], best["best_dev_score"]) == (400, 40.0, 90.0)
    assert best["best_dev_scores"] == {"tag_acc": 90.0}


def test_missing_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="data directory .*not found"):
        bench.main(["--data-dir", str(tmp_path / "nowhere"), "--work-dir", str(tmp_path / "w"),
                    "--output", str(tmp_path / "r.json")])


def config_without_heads(config):
    """The config as a string, without the model's joint_pos / joint_morph lines."""
    return [line for line in config.to_str().splitlines() if not line.startswith(("joint_pos", "joint_morph"))]


def test_the_default_systems_and_the_shared_step_policy(tmp_path):
    """Every system gets the benchmark's step policy and data; the defaults
    systems are otherwise exactly what `spacy init config -p FACTORY` writes."""
    from spacy.cli.init_config import init_config

    systems = bench.select_systems(argparse.Namespace(lstm=None, systems=None))
    assert list(systems) == ["spacy_tagger", "spacy_morphologizer", "lstm_tagger", "lstm_joint_tagger",
                             "lstm_tagger_defaults", "lstm_joint_tagger_defaults", "lstm_tagger_defaults_no_aux"]
    policy = {"max_steps": 30, "patience": 20, "eval_frequency": 10, "max_epochs": 0}
    data = {split: {"path": str(tmp_path / f"{split}.spacy")} for split in ("train", "dev")}
    for name, factory in (("lstm_tagger_defaults", "lstm_tagger"), ("lstm_joint_tagger_defaults", "lstm_joint_tagger")):
        config = bench.build_config(systems[name], "fi", data, policy, tmp_path / "log.jsonl")
        spacy_config = init_config(lang="fi", pipeline=[factory], optimize="efficiency", gpu=False, silent=True)
        assert config["components"] == spacy_config["components"] and config["nlp"]["lang"] == "fi"
        assert {k: config["training"][k] for k in policy} == policy
        assert config["training"]["optimizer"] == spacy_config["training"]["optimizer"]
        assert config["training"]["batcher"] == spacy_config["training"]["batcher"]
        assert config["paths"]["train"] == data["train"]["path"] and config["corpora"]["dev"]["gold_preproc"]
    no_aux = bench.build_config(systems["lstm_tagger_defaults_no_aux"], "fi", data, policy, tmp_path / "log.jsonl")
    model = no_aux["components"]["lstm_tagger"]["model"]
    assert model["joint_pos"] is False and model["joint_morph"] is False
    assert config_without_heads(no_aux) == config_without_heads(
        bench.build_config(systems["lstm_tagger_defaults"], "fi", data, policy, tmp_path / "log.jsonl"))
    assert bench.parse_lstm(["mine=efficiency"])["mine"].preset == "efficiency"
    assert bench.parse_lstm(["mine=configs/spacy_tagger.cfg"])["mine"].file == "configs/spacy_tagger.cfg"


def test_bad_lstm_option_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="name=path/to/config.cfg"):
        bench.parse_lstm(["configs/lstm_tagger_efficiency.cfg"])
    with pytest.raises(SystemExit, match="not found"):
        bench.parse_lstm([f"x={tmp_path / 'missing.cfg'}"])


@needs_data
def test_prepared_split_matches_the_conllu_files(tmp_path):
    """Train = first 27, dev = last 3 of the first 30 sentences of the UD dev
    file, eval = the UD test file's sentences, converted unchanged."""
    info = bench.prepare_treebank(DATA_DIR, TREEBANK, tmp_path, n_sents=4, limit_sents=30)
    raw = bench.read_sentences(DATA_DIR / TREEBANK / f"{TREEBANK}-ud-dev.conllu")[:30]
    raw_eval = bench.read_sentences(DATA_DIR / TREEBANK / f"{TREEBANK}-ud-test.conllu")[:30]
    train = _docbin_sentences(tmp_path / "train.spacy")
    dev = _docbin_sentences(tmp_path / "dev.spacy")
    assert (info["train"]["sentences"], info["dev"]["sentences"], info["eval"]["sentences"]) == (27, 3, 30)
    assert train == [_sentence_words(b) for b in raw[:27]]
    assert dev == [_sentence_words(b) for b in raw[27:]]
    assert _docbin_sentences(tmp_path / "eval.spacy") == [_sentence_words(b) for b in raw_eval]
    ids = lambda blocks: {ln for b in blocks for ln in b.split("\n") if ln.startswith("# sent_id")}  # noqa: E731
    assert len(ids(raw)) == 30
    assert not ids(raw[:27]) & ids(raw[27:])
    # docs of n_sents sentences, grouped after the split
    assert [len(list(d.sents)) for d in DocBin().from_disk(tmp_path / "train.spacy").get_docs(spacy.blank("nl").vocab)] == [4] * 6 + [3]
    # the full file: the last 10% of 718 sentences
    full_train, full_dev = bench.split_train_dev(bench.read_sentences(DATA_DIR / TREEBANK / f"{TREEBANK}-ud-dev.conllu"))
    assert (len(full_train), len(full_dev)) == (646, 72)


@needs_data
def test_end_to_end_schema_and_resume(tmp_path):
    work, out = tmp_path / "work", tmp_path / "results" / "multilingual.json"
    argv = ["--data-dir", str(DATA_DIR), "--treebanks", TREEBANK, "--limit-sents", "30", "--n-sents", "5",
            "--max-steps", "4", "--eval-frequency", "2", "--patience", "4", "--rounds", "0",
            "--systems", "spacy_tagger", "spacy_morphologizer", "lstm_tagger", "lstm_joint_tagger_defaults",
            "--work-dir", str(work), "--output", str(out)]
    bench.main(argv)
    result = srsly.read_json(out)
    assert set(result) >= {"machine", "settings", "notes", "treebanks", "margins", "complete"}
    assert result["complete"] is False  # timing only preliminary with --rounds 0
    assert result["settings"]["max_steps"] == 4 and result["settings"]["patience"] == 4
    rows = result["treebanks"][TREEBANK]
    assert set(rows) == {"spacy_tagger", "spacy_morphologizer", "lstm_tagger", "lstm_joint_tagger_defaults"}
    for name in ("spacy_tagger", "lstm_tagger", "lstm_joint_tagger_defaults"):
        assert 0 <= rows[name]["tag_acc"] <= 100
        assert rows[name]["words_per_second"] > 0 and rows[name]["train_seconds"] >= 0
    assert rows["spacy_tagger"]["pos_acc"] is None and rows["spacy_tagger"]["morph_acc"] is None
    assert rows["spacy_morphologizer"]["tag_acc"] is None
    assert 0 <= rows["spacy_morphologizer"]["pos_acc"] <= 100 and 0 <= rows["spacy_morphologizer"]["morph_acc"] <= 100
    margin = round(rows["lstm_tagger"]["tag_acc"] - rows["spacy_tagger"]["tag_acc"], 2)
    assert rows["lstm_tagger"]["margin"] == pytest.approx(margin, abs=1e-9)  # srsly reads floats imprecisely
    assert result["margins"][TREEBANK] == {s: rows[s]["margin"] for s in ("lstm_tagger", "lstm_joint_tagger_defaults")}
    # the joint factory's defaults also write UPOS and FEATS, scored against spaCy's morphologizer
    assert 0 <= rows["lstm_joint_tagger_defaults"]["pos_acc"] <= 100
    assert 0 <= rows["lstm_joint_tagger_defaults"]["morph_acc"] <= 100
    assert result["settings"]["systems"]["lstm_joint_tagger_defaults"] == \
        "spacy init config -p lstm_joint_tagger -o efficiency"
    assert result["settings"]["systems"]["lstm_tagger"] == "preset small"
    assert rows["lstm_tagger"]["best_step"] in (0, 2, 4)
    assert out.with_suffix(".png").stat().st_size > 0
    assert all(r["timing"].startswith("preliminary") for r in rows.values())  # --rounds 0: no interleaved timing
    # rebuilding the JSON from the work dir alone gives the same results
    first = srsly.read_json(out)
    bench.main([*argv, "--collect-only"])
    assert srsly.read_json(out)["treebanks"] == first["treebanks"]
    # resuming: nothing is retrained
    stamps = {s: (work / TREEBANK / s / "train_result.json").stat().st_mtime_ns for s in rows}
    bench.main(argv)
    assert {s: (work / TREEBANK / s / "train_result.json").stat().st_mtime_ns for s in rows} == stamps
    assert "reusing finished training" in (work / "progress.log").read_text()
    assert srsly.read_json(out)["treebanks"][TREEBANK]["lstm_tagger"]["tag_acc"] == rows["lstm_tagger"]["tag_acc"]
    # a changed policy retrains (only the systems asked for)
    bench.main([*argv[:argv.index("--systems")], "--systems", "spacy_tagger", "--patience", "6",
                "--work-dir", str(work), "--output", str(out)])
    assert "the policy changed" in (work / "progress.log").read_text()
    assert (work / TREEBANK / "spacy_tagger" / "train_result.json").stat().st_mtime_ns != stamps["spacy_tagger"]
    assert (work / TREEBANK / "lstm_tagger" / "train_result.json").stat().st_mtime_ns == stamps["lstm_tagger"]
    assert list(srsly.read_json(out)["treebanks"][TREEBANK]) == ["spacy_tagger"]


def test_spacy_tagger_trains_on_a_tag_that_looks_negative(tmp_path):
    """ga_idt tags "!" as "!": spaCy's tagger (neg_prefix "!") would read it as
    a negative label and fail with KeyError ''; the benchmark's config for
    spacy_tagger turns the prefix off only where such a tag occurs."""
    from spacy.tokens import Doc
    from spacy.training import Example
    from spacy.util import load_model_from_config

    def data_with(tags):
        vocab = spacy.blank("ga").vocab
        doc = Doc(vocab, words=["Dia", "duit", "!"], tags=tags)
        data = {}
        for split in ("train", "dev"):
            DocBin(docs=[doc]).to_disk(tmp_path / f"{split}.spacy")
            data[split] = {"path": str(tmp_path / f"{split}.spacy")}
        return data

    policy = {"max_steps": 2, "patience": 2, "eval_frequency": 1, "max_epochs": 0}
    spacy_tagger = bench.SPACY_SYSTEMS["spacy_tagger"]
    plain = bench.build_config(spacy_tagger, "ga", data_with(["Noun", "Prep", "Punct"]), policy, tmp_path / "l")
    assert plain["components"]["tagger"]["neg_prefix"] == "!"
    data = data_with(["Noun", "Prep", "!"])
    config = bench.build_config(spacy_tagger, "ga", data, policy, tmp_path / "l")
    assert config["components"]["tagger"]["neg_prefix"] == ""
    for neg_prefix, fails in (("!", True), ("", False)):
        config["components"]["tagger"]["neg_prefix"] = neg_prefix
        nlp = load_model_from_config(config, auto_fill=True, validate=True)
        gold = next(DocBin().from_disk(data["train"]["path"]).get_docs(nlp.vocab))
        examples = [Example(Doc(nlp.vocab, words=[t.text for t in gold]), gold)]
        nlp.initialize(lambda: examples)
        if fails:
            with pytest.raises(KeyError):
                nlp.update(examples)
        else:
            assert nlp.update(examples)["tagger"] > 0


@needs_data
def test_collect_only_with_nothing_finished_says_so(tmp_path):
    argv = ["--data-dir", str(DATA_DIR), "--treebanks", TREEBANK, "--limit-sents", "30", "--n-sents", "5",
            "--systems", "spacy_tagger", "--work-dir", str(tmp_path / "work"),
            "--output", str(tmp_path / "out.json"), "--collect-only"]
    with pytest.raises(SystemExit, match="found no finished system"):
        bench.main(argv)
    assert not (tmp_path / "out.json").exists()
