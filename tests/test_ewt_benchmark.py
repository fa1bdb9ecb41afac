"""The EWT benchmark harness: what its timing children see (issue 17)."""
import sys
from pathlib import Path

import pytest
import spacy

from conftest import make_examples, train_tiny

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import ewt_benchmark  # noqa: E402


def test_timing_children_run_every_thread_pool_single_threaded():
    env = ewt_benchmark.single_threaded_env(1)
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
        assert ewt_benchmark.empty_char_caches(loaded) == n_caches
        assert len(root.char_encoder.cache) == 0


def test_numpy_blas_variant_measures_the_trained_spacy_tagger():
    source, overrides = ewt_benchmark.VARIANTS["spacy_tagger_numpy_blas"]
    assert source == "spacy_tagger" and overrides == {}
    assert "spacy_tagger_numpy_blas" in ewt_benchmark.NUMPY_BLAS_VARIANTS
    assert set(ewt_benchmark.SPACY_BASELINES) <= set(ewt_benchmark.DEFAULT_SYSTEMS)


def test_a_distilled_row_names_the_teachers_it_was_trained_by(tmp_path, monkeypatch):
    work = tmp_path / "work"
    taught = {"system": "lstm_tagger_distilled", "teachers": [
        str(work / "lstm_tagger_accuracy" / "model" / "model-best"), str(tmp_path / "elsewhere" / "model-best")]}
    assert ewt_benchmark.teacher_names(taught, work) == ["lstm_tagger_accuracy", str(tmp_path / "elsewhere" / "model-best")]
    # train-one run by hand with relative paths (from the repo root)
    relative = {"system": "lstm_tagger_distilled", "teachers": ["work/lstm_tagger_efficiency/model/model-best"]}
    monkeypatch.chdir(tmp_path)
    assert ewt_benchmark.teacher_names(relative, work) == ["lstm_tagger_efficiency"]
    # a training record without teachers (e.g. finish-one): the benchmark's recipe
    assert ewt_benchmark.teacher_names({"system": "lstm_tagger_distilled"}, work) == \
        ewt_benchmark.TEACHERS["lstm_tagger_distilled"] == ["lstm_tagger_accuracy", "lstm_tagger_efficiency"]


def test_whole_documents_keep_every_sentence_and_the_gold_tokens():
    """doc_tag_acc tags each document in one Doc, on its gold tokens (the
    tokenizer would split "New-York"), not one Doc per sentence."""
    from spacy.tokens import Doc
    from spacy.training import Example

    nlp = spacy.blank("en")
    words = ["New-York", "is", "big", ".", "I", "like", "it", "."]
    reference = Doc(nlp.vocab, words=words, spaces=[True, True, False, True, True, True, False, False],
                    tags=["NNP", "VBZ", "JJ", ".", "PRP", "VBP", "PRP", "."],
                    sent_starts=[True, False, False, False, True, False, False, False])
    assert len(nlp.make_doc(reference.text)) > len(words)
    (example,) = ewt_benchmark.whole_documents([Example(nlp.make_doc(reference.text), reference)])
    assert [t.text for t in example.predicted] == words
    assert example.predicted.text == reference.text
    assert not example.predicted.has_annotation("TAG")
    assert example.reference is reference


def test_train_one_config_trains_another_config_under_the_systems_name(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(ewt_benchmark, "train_one", lambda system, config, *args, **kwargs: calls.append((system, config)))
    ewt_benchmark.main(["train-one", "lstm_tagger_efficiency", "--work-dir", str(tmp_path)])
    other = tmp_path / "older.cfg"
    ewt_benchmark.main(["train-one", "lstm_tagger_efficiency", "--work-dir", str(tmp_path), "--config", str(other)])
    assert calls == [("lstm_tagger_efficiency", ewt_benchmark.SYSTEMS["lstm_tagger_efficiency"]),
                     ("lstm_tagger_efficiency", other.resolve())]


def test_a_training_record_keeps_the_overrides_it_was_trained_with(tmp_path):
    """A second-seed run (``train-one ... --set system.seed=1``) must not be
    recorded as if it were the config as committed."""
    import json

    import srsly

    (tmp_path / "train_log.jsonl").write_text("\n".join(json.dumps(row) for row in (
        {"seconds": 1.0, "step": 0, "epoch": 0, "score": 0.1, "scores": {"tag_acc": 0.1}},
        {"seconds": 2.0, "step": 500, "epoch": 1, "score": 0.9, "scores": {"tag_acc": 0.9}},
    )))
    config = ewt_benchmark.SYSTEMS["lstm_tagger_efficiency"]
    ewt_benchmark.write_train_result("lstm_tagger_efficiency", config, tmp_path, 3.0, 1, 500, 1.0,
                                     overrides={"system.seed": 1})
    record = srsly.read_json(tmp_path / "train_result.json")
    assert record["overrides"] == {"system.seed": 1}
    assert (record["best_step"], record["train_seconds"]) == (500, 2.0)
    ewt_benchmark.write_train_result("lstm_tagger_efficiency", config, tmp_path, 3.0, 1, 500, 1.0)
    assert "overrides" not in srsly.read_json(tmp_path / "train_result.json")


def test_a_seed_system_trains_its_config_with_its_seed(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(ewt_benchmark, "train_one", lambda system, config, *args: calls.append((system, config, args[-1])))
    ewt_benchmark.main(["train-one", "lstm_tagger_efficiency_seed1", "--work-dir", str(tmp_path)])
    ewt_benchmark.main(["train-one", "lstm_tagger_efficiency_seed1", "--work-dir", str(tmp_path), "--set", "system.seed=7"])
    config = ewt_benchmark.SYSTEMS["lstm_tagger_efficiency"]
    assert calls == [("lstm_tagger_efficiency_seed1", config, {"system.seed": 1}),
                     ("lstm_tagger_efficiency_seed1", config, {"system.seed": 7})]


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
            "config": f"configs/{name}.cfg", "train_seconds": seconds, "train_total_seconds": seconds + 1,
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
    assert ewt_benchmark.empty_char_caches(nlp) == 4  # two members, each a float module and a bf16 copy


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc (VmHWM)")
def test_a_measuring_childs_peak_rss_is_its_own():
    """getrusage's ru_maxrss survives fork + exec, so a child started by a
    runner that holds 300 MB would report 300 MB too; the child's own peak
    (VmHWM) does not."""
    import subprocess

    import numpy

    held = numpy.ones((300, 1024, 1024), dtype=numpy.uint8)  # noqa: F841 (held while the child runs)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from ewt_benchmark import peak_rss_mb; print(peak_rss_mb())")
    out = subprocess.run([sys.executable, "-c", code, str(Path(ewt_benchmark.__file__).parent)],
                         capture_output=True, text=True, check=True, timeout=300)
    assert float(out.stdout.strip().splitlines()[-1]) < 250


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc/self/clear_refs")
def test_the_tagging_peak_rss_leaves_out_what_scoring_held():
    """measure-one restarts the peak after scoring: memory held and freed
    before the reset is not in the peak read after it."""
    import numpy

    held = numpy.ones((300, 1024, 1024), dtype=numpy.uint8)
    before = ewt_benchmark.peak_rss_mb()
    del held
    assert ewt_benchmark.reset_peak_rss()
    after = ewt_benchmark.peak_rss_mb()
    assert after < before - 200
    numpy.ones((100, 1024, 1024), dtype=numpy.uint8)
    assert ewt_benchmark.peak_rss_mb() > after + 50
