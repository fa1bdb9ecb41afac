"""benchmarks/ewt_benchmark.py and the harness it shares with multilingual.py:
what timing children see, what each system trains with, resuming."""
import sys
from pathlib import Path

import pytest
import spacy

from conftest import make_examples, train_tiny

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import ewt_benchmark  # noqa: E402
import harness  # noqa: E402


def test_timing_children_run_every_thread_pool_single_threaded():
    env = harness.single_threaded_env(1)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
        assert env[name] == "1"


def test_char_caches_are_emptied_before_each_timed_pass(tmp_path):
    """A timed pass must not profit from the dev words an earlier pass put
    in the character cache: the float module's and the bfloat16 copy's."""
    nlp = train_tiny(n_iter=3)
    texts = [eg.reference.text for eg in make_examples(nlp)]
    nlp.to_disk(tmp_path / "float")
    for settings, n_caches in (({}, 1), ({"bfloat16": True}, 2)):
        loaded = spacy.load(tmp_path / "float", config={"components": {"lstm_tagger": {"model": settings}}})
        list(loaded.pipe(texts))
        model = loaded.get_pipe("lstm_tagger").model
        shim = model.layers[0].shims[0]
        root = shim._model if shim.predict_module is None else shim.predict_module.current.module
        assert len(root.char_encoder.cache) > 0
        assert harness.empty_char_caches(loaded) == n_caches
        assert len(root.char_encoder.cache) == 0


def test_numpy_blas_variant_measures_the_trained_spacy_tagger():
    source, overrides = ewt_benchmark.VARIANTS["spacy_tagger_numpy_blas"]
    assert source == "spacy_tagger" and overrides == {}
    assert "spacy_tagger_numpy_blas" in ewt_benchmark.NUMPY_BLAS_VARIANTS
    assert set(ewt_benchmark.SPACY_BASELINES) <= set(ewt_benchmark.DEFAULT_SYSTEMS)


def _args(tmp_path, *extra):
    """The benchmark's options (the files need not exist to build configs)."""
    return ewt_benchmark.build_parser().parse_args([
        "--work-dir", str(tmp_path / "work"), "--train", str(tmp_path / "train.spacy"),
        "--dev", str(tmp_path / "dev.spacy"), *extra])


def test_a_distilled_student_trains_after_its_teachers_on_their_models(tmp_path):
    args = _args(tmp_path, "--max-steps", "7")
    order = ewt_benchmark.training_order(["lstm_tagger_distilled", "lstm_tagger_ensemble_bf16"])
    assert order.index("lstm_tagger_accuracy") < order.index("lstm_tagger_distilled")
    assert order.index("lstm_tagger_efficiency_seed1") < order.index("lstm_tagger_ensemble")
    assert "lstm_tagger_ensemble_bf16" not in order  # a variant trains nothing of its own
    config = ewt_benchmark.system_config("lstm_tagger_distilled", args)
    work = tmp_path / "work"
    assert config["paths"]["teacher"] == [str(work / t / "model" / "model-best")
                                          for t in ("lstm_tagger_accuracy", "lstm_tagger_efficiency")]
    assert config["paths"]["train"] == str(tmp_path / "train.spacy") and config["training"]["max_steps"] == 7
    teachers = ["lstm_tagger_accuracy", str(work / "x" / "model" / "model-best")]
    record = {"config": "preset distilled", "teachers": teachers,
              "train_seconds": 1.0, "train_total_seconds": 2.0, "best_step": 0, "max_steps": 7,
              "train_peak_rss_mb": 1.0, "curve": []}
    measured = {"scores": {"tag_acc": 0.5, "pos_acc": None, "doc_tag_acc": 0.25}, "n_words": 10,
                "inference_peak_rss_mb": 3.0}
    (work / "lstm_tagger_distilled" / "model" / "model-best").mkdir(parents=True)
    row = ewt_benchmark.row("lstm_tagger_distilled", record, measured, [2.0, 1.0, 5.0], work)
    assert row["teachers"] == ["lstm_tagger_accuracy", "x"] and row["words_per_second"] == 5
    assert (row["tag_acc"], row["pos_acc"], row["doc_tag_acc"]) == (50.0, None, 25.0)


def test_the_defaults_system_is_what_spacy_init_config_writes(tmp_path):
    """lstm_tagger_defaults: the factory's defaults and spaCy's training block,
    only the data (paths, gold tokens, as every system here) and the logger set."""
    from spacy.cli.init_config import init_config

    assert "lstm_tagger_defaults" in ewt_benchmark.DEFAULT_SYSTEMS
    config = ewt_benchmark.system_config("lstm_tagger_defaults", _args(tmp_path))
    spacy_config = init_config(lang="en", pipeline=["lstm_tagger"], optimize="efficiency", gpu=False, silent=True)
    assert config["components"] == spacy_config["components"]
    assert config["nlp"] == spacy_config["nlp"]
    assert {k: v for k, v in config["training"].items() if k != "logger"} == \
        {k: v for k, v in spacy_config["training"].items() if k != "logger"}
    assert config["training"]["logger"]["@loggers"] == harness.LOGGER
    assert config["corpora"]["train"]["gold_preproc"] and not spacy_config["corpora"]["train"]["gold_preproc"]
    assert ewt_benchmark.SYSTEMS["lstm_tagger_defaults"].describe() == "spacy init config -p lstm_tagger -o efficiency"


def test_whole_documents_keep_every_sentence_and_the_gold_tokens():
    """doc_tag_acc tags each document in one Doc, on its gold tokens (the
    tokenizer would split "New-York"), not one Doc per sentence."""
    from spacy.tokens import Doc

    nlp = spacy.blank("en")
    words = ["New-York", "is", "big", ".", "I", "like", "it", "."]
    reference = Doc(nlp.vocab, words=words, spaces=[True, True, False, True, True, True, False, False],
                    tags=["NNP", "VBZ", "JJ", ".", "PRP", "VBP", "PRP", "."],
                    sent_starts=[True, False, False, False, True, False, False, False])
    assert len(nlp.make_doc(reference.text)) > len(words)
    (example,) = harness.whole_documents([reference])
    assert [t.text for t in example.predicted] == words
    assert example.predicted.text == reference.text
    assert not example.predicted.has_annotation("TAG")
    assert example.reference is reference


def _train_one_by_hand(tmp_path, monkeypatch, *argv):
    """``ewt_benchmark.py train-one ...`` with the training itself left out:
    the config and record it would train with."""
    import srsly
    from spacy.util import load_config

    calls = []
    monkeypatch.setattr(harness, "train_one", lambda out_dir, threads: calls.append(out_dir))
    ewt_benchmark.main(["train-one", *argv, "--work-dir", str(tmp_path / "work")])
    (out_dir,) = calls
    return load_config(out_dir / "config.cfg", interpolate=False), srsly.read_json(out_dir / "system.json")


def test_train_one_config_trains_another_config_under_the_systems_name(tmp_path, monkeypatch):
    from spacy.util import load_config

    from spacy_lstm_tagger.presets import preset_config

    config, meta = _train_one_by_hand(tmp_path, monkeypatch, "lstm_tagger_efficiency")
    assert config["components"] == preset_config("efficiency")["components"]
    assert meta == {"system": "lstm_tagger_efficiency", "config": "preset efficiency"}
    other = harness.ROOT / "configs" / "spacy_tagger.cfg"
    config, meta = _train_one_by_hand(tmp_path, monkeypatch, "lstm_tagger_efficiency", "--config", str(other))
    assert config["components"] == load_config(other, interpolate=False)["components"]
    assert meta["config"] == str(other)


def test_a_seed_system_trains_its_config_with_its_seed(tmp_path, monkeypatch):
    config, meta = _train_one_by_hand(tmp_path, monkeypatch, "lstm_tagger_efficiency_seed1")
    assert config["system"]["seed"] == 1 and meta["overrides"] == {"system.seed": 1}
    config, meta = _train_one_by_hand(tmp_path, monkeypatch, "lstm_tagger_efficiency_seed1", "--set", "system.seed=7")
    assert config["system"]["seed"] == 7 and meta["overrides"] == {"system.seed": 7}


def test_a_training_record_keeps_what_the_benchmark_said_about_the_system(tmp_path):
    """A second-seed run must not be recorded as if it were the config as
    committed; model-best is the last of equal best scores (what spaCy saved)."""
    import json

    import srsly

    from spacy_lstm_tagger.presets import preset_config

    (tmp_path / "train_log.jsonl").write_text("\n".join(json.dumps(row) for row in (
        {"seconds": 1.0, "step": 0, "epoch": 0, "score": 0.1, "scores": {"tag_acc": 0.1}},
        {"seconds": 2.0, "step": 500, "epoch": 1, "score": 0.9, "scores": {"tag_acc": 0.9}},
        {"seconds": 3.0, "step": 1000, "epoch": 2, "score": 0.9, "scores": {"tag_acc": 0.9}},
        {"seconds": 4.0, "step": 1500, "epoch": 3, "score": 0.8, "scores": {"tag_acc": 0.8}},
    )))
    preset_config("efficiency").to_disk(tmp_path / "config.cfg")
    srsly.write_json(tmp_path / "system.json", {"system": "s", "overrides": {"system.seed": 1}})
    record = harness.write_record(tmp_path, 5.0, 1, 10.0)
    assert record == srsly.read_json(tmp_path / "train_result.json")
    assert record["overrides"] == {"system.seed": 1} and record["system"] == "s"
    assert (record["best_step"], record["train_seconds"], record["best_dev_score"]) == (1000, 3.0, 90.0)
    assert (record["train_total_seconds"], record["last_step"], record["train_peak_rss_mb"]) == (5.0, 1500, 10.0)
    assert record["max_steps"] == preset_config("efficiency")["training"]["max_steps"]
    (tmp_path / "system.json").unlink()
    assert "overrides" not in harness.write_record(tmp_path, 5.0, 1, 10.0)
    # stopped by hand: refused while a record exists, then recorded from the log
    (tmp_path / "model" / "model-best").mkdir(parents=True)
    with pytest.raises(SystemExit, match="already has a finished training"):
        harness.finish_one(tmp_path, 1)
    (tmp_path / "train_result.json").unlink()
    stopped = harness.finish_one(tmp_path, 1)
    assert stopped["stopped_at_step"] == 1500 and stopped["train_total_seconds"] == 4.0


def test_a_tiny_run_trains_scores_times_and_resumes(tmp_path, capsys):
    """The whole benchmark on a four-sentence corpus: spaCy's tagger (also on
    numpy's BLAS) and the lstm_tagger factory defaults, two steps each."""
    import srsly
    from spacy.tokens import DocBin

    nlp = spacy.blank("en")
    corpus = tmp_path / "tiny.spacy"
    DocBin(docs=[eg.reference for eg in make_examples(nlp)]).to_disk(corpus)
    out = tmp_path / "ewt.json"
    argv = ["--train", str(corpus), "--dev", str(corpus), "--work-dir", str(tmp_path / "work"), "--output", str(out),
            "--threads", "1", "--max-steps", "2", "--rounds", "2", "--repeats", "1",
            "--systems", "spacy_tagger", "lstm_tagger_defaults", "spacy_tagger_numpy_blas"]
    ewt_benchmark.main(argv)
    result = srsly.read_json(out)
    rows = result["systems"]
    assert list(rows) == ["spacy_tagger", "lstm_tagger_defaults", "spacy_tagger_numpy_blas"]
    for name, r in rows.items():
        assert 0 <= r["tag_acc"] <= 100 and r["words_per_second"] > 0 and r["max_steps"] == 2
        base = rows["spacy_tagger"]["words_per_second"]
        # srsly reads floats back imprecisely (2.28 -> 2.2800000000000002): compare to the cent
        assert r["speed_ratio_vs_spacy_tagger"] == pytest.approx(round(r["words_per_second"] / base, 2), abs=1e-9)
        assert "speed_ratio_vs_fastest_spacy" in r and r["curve"] and r["model_mb"] > 0
    assert rows["lstm_tagger_defaults"]["config"] == "spacy init config -p lstm_tagger -o efficiency"
    assert rows["spacy_tagger"]["config"] == "configs/spacy_tagger.cfg"
    assert len(list((tmp_path / "work" / "lstm_tagger_defaults").glob("measure_*.json"))) == 2
    assert result["machine"]["timing"].startswith("median of 2 rounds") and "cpu_model" in result["machine"]
    assert out.with_suffix(".png").stat().st_size > 0
    stamp = (tmp_path / "work" / "lstm_tagger_defaults" / "train_result.json").stat().st_mtime_ns
    capsys.readouterr()
    ewt_benchmark.main([*argv[:-4], "--systems", "lstm_tagger_defaults", "--rounds", "1"])
    assert "lstm_tagger_defaults: reusing finished training" in capsys.readouterr().out
    assert (tmp_path / "work" / "lstm_tagger_defaults" / "train_result.json").stat().st_mtime_ns == stamp
    assert srsly.read_json(out)["systems"]["lstm_tagger_defaults"]["tag_acc"] == rows["lstm_tagger_defaults"]["tag_acc"]


def test_an_ensemble_system_is_assembled_from_its_trained_members(tmp_path, monkeypatch):
    """The ensemble's record: its members, the longest member's training
    time; its pipeline: both members, each member's caches emptied, and the
    bf16 variant's override reaching every member."""
    import srsly

    work = tmp_path / "work"
    members = {"a": 10.0, "b": 30.0}
    for seed, (name, seconds) in enumerate(members.items()):
        (work / name / "model").mkdir(parents=True)
        train_tiny(n_iter=3, seed=seed).to_disk(work / name / "model" / "model-best")
        srsly.write_json(work / name / "train_result.json", {
            "config": f"preset {name}", "train_seconds": seconds, "train_total_seconds": seconds + 1,
            "train_peak_rss_mb": 100.0 + seconds, "torch_threads": 1, "max_steps": 500})
    monkeypatch.setitem(ewt_benchmark.ENSEMBLES, "ens", list(members))
    ewt_benchmark.assemble_one("ens", work)
    record = srsly.read_json(work / "ens" / "train_result.json")
    assert record["members"] == ["a", "b"] and record["train_seconds"] == 30.0
    assert record["members_train_seconds"] == members and record["train_peak_rss_mb"] == 130.0
    overrides = ewt_benchmark.every_member("ens", {"bfloat16": True})
    nlp = spacy.load(work / "ens" / "model" / "model-best", config=overrides)
    assert [m["bfloat16"] for m in nlp.config["components"]["lstm_tagger"]["model"]["*"].values()] == [True, True]
    list(nlp.pipe([eg.reference.text for eg in make_examples(nlp)]))
    assert harness.empty_char_caches(nlp) == 4  # two members, each a float module and a bf16 copy


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc (VmHWM)")
def test_a_measuring_childs_peak_rss_is_its_own():
    """getrusage's ru_maxrss survives fork + exec, so a child started by a
    runner that holds 300 MB would report 300 MB too; the child's own peak
    (VmHWM) does not."""
    import subprocess

    import numpy

    held = numpy.ones((300, 1024, 1024), dtype=numpy.uint8)  # noqa: F841 (held while the child runs)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from harness import peak_rss_mb; print(peak_rss_mb())")
    out = subprocess.run([sys.executable, "-c", code, str(Path(harness.__file__).parent)],
                         capture_output=True, text=True, check=True, timeout=300)
    assert float(out.stdout.strip().splitlines()[-1]) < 250


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc/self/clear_refs")
def test_the_tagging_peak_rss_leaves_out_what_scoring_held():
    """measure-one restarts the peak after scoring: memory held and freed
    before the reset is not in the peak read after it."""
    import numpy

    held = numpy.ones((300, 1024, 1024), dtype=numpy.uint8)
    before = harness.peak_rss_mb()
    del held
    assert harness.reset_peak_rss()
    after = harness.peak_rss_mb()
    assert after < before - 200
    numpy.ones((100, 1024, 1024), dtype=numpy.uint8)
    assert harness.peak_rss_mb() > after + 50


def test_a_stored_teacher_student_trains_on_train_plus_unlabeled_after_its_teacher(tmp_path, monkeypatch):
    """The student's teacher trains first; its outputs over a corpus directory
    linking the train file and the unlabeled text are made once (then reused)
    and the student's paths name all three."""
    import srsly

    pretrained = tmp_path / "pretrained"
    pretrained.mkdir()
    from spacy.tokens import Doc, DocBin

    vocab = spacy.blank("en").vocab
    # 10 annotated tokens beside 30 unlabeled ones: train is linked 3 times (--gold-share 0.5)
    DocBin(docs=[Doc(vocab, words=["w"] * 5)] * 6).to_disk(pretrained / "gutenberg.spacy")
    DocBin(docs=[Doc(vocab, words=["w"] * 5)] * 2).to_disk(tmp_path / "train.spacy")
    args = _args(tmp_path, "--pretrained-dir", str(pretrained), "--teacher-processes", "2")
    order = ewt_benchmark.training_order(["lstm_tagger_student", "lstm_tagger_student_fast"])
    assert order == ["lstm_tagger_finetuned", "lstm_tagger_student", "lstm_tagger_student_fast"]
    calls = []

    def fake_run(command, check, env):
        calls.append(command)
        out = Path(command[command.index("teacher-outputs") + 2])
        out.mkdir(parents=True)
        srsly.write_json(out / "meta.json", {"n_sentences": 3, "n_tokens": 9, "top_k": 8})

    monkeypatch.setattr(ewt_benchmark.subprocess, "run", fake_run)
    work = tmp_path / "work"
    for name in ("lstm_tagger_student", "lstm_tagger_student_fast"):
        config = ewt_benchmark.system_config(name, args)
        teacher = work / "lstm_tagger_finetuned"
        assert config["paths"]["train"] == str(teacher / "distillation_corpus")
        assert config["paths"]["teacher_outputs"] == str(teacher / "teacher_outputs")
        assert config["paths"]["teacher"] == str(teacher / "model" / "model-best")
    assert len(calls) == 1 and calls[0][-2:] == ["--processes", "2"]
    linked = sorted(p.name for p in (work / "lstm_tagger_finetuned" / "distillation_corpus").iterdir())
    assert linked == ["gutenberg.spacy", "train.copy2.spacy", "train.copy3.spacy", "train.spacy"]
    record = {"stored_teacher": "lstm_tagger_finetuned", "unlabeled": ["gutenberg"]}
    row = ewt_benchmark.stored_teacher_row(record, work)
    assert row["teacher_outputs"]["tokens"] == 9 and row["teacher_outputs"]["processes"] == 2
