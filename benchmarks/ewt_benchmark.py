"""Side-by-side benchmark: spaCy's built-in tagger vs lstm_tagger on UD English EWT.

One command trains every system on the same train corpus on this machine,
scores each on dev, measures CPU inference speed (median of repeated,
interleaved runs, so machine noise hits every system alike) and writes
``benchmarks/results/ewt.json`` plus a PNG. It is resumable: each system's
training result is saved as soon as it finishes and is reused on a re-run.

    python benchmarks/ewt_benchmark.py --train corpus/en_ewt-ud-train.spacy \\
        --dev corpus/en_ewt-ud-dev.spacy

Subcommands ``train-one`` and ``measure-one`` run in child processes so that
peak RSS is measured per system.
"""
import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import srsly

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MAIN_SYSTEMS = {
    "spacy_tagger": ROOT / "configs" / "spacy_tagger.cfg",
    "lstm_tagger_efficiency": ROOT / "configs" / "lstm_tagger_efficiency.cfg",
    "lstm_tagger_accuracy": ROOT / "configs" / "lstm_tagger_accuracy.cfg",
    "lstm_tagger_small": ROOT / "configs" / "lstm_tagger_small.cfg",
}
# The optional features, each measured against lstm_tagger_efficiency (--systems).
FEATURE_SYSTEMS = {
    "lstm_tagger_efficiency_crf": ROOT / "configs" / "lstm_tagger_efficiency_crf.cfg",
    "lstm_tagger_efficiency_joint_pos": ROOT / "configs" / "lstm_tagger_efficiency_joint_pos.cfg",
    "lstm_tagger_efficiency_vectors": ROOT / "configs" / "lstm_tagger_efficiency_vectors.cfg",
}
# Pretrained knowledge (issue 13), each measured against spaCy's tagger and the
# plain configs (--systems ... --output benchmarks/results/ewt_pretrained.json).
# Resources come from the package index (scripts/prepare_pretrained.py).
PRETRAINED_SYSTEMS = {
    "lstm_tagger_vectors": ROOT / "configs" / "lstm_tagger_efficiency_md_vectors.cfg",
    "lstm_tagger_accuracy_vectors": ROOT / "configs" / "lstm_tagger_accuracy_md_vectors.cfg",
    "lstm_tagger_glove": ROOT / "configs" / "lstm_tagger_efficiency_glove.cfg",
    "lstm_tagger_clusters": ROOT / "configs" / "lstm_tagger_efficiency_clusters.cfg",
    "lstm_tagger_transformer": ROOT / "configs" / "lstm_tagger_efficiency_transformer.cfg",
}
# Other pretrained files a system's config reads: (config [paths] key, resource, file under --pretrained-dir).
# The transformer system needs spacy-transformers installed (pip install spacy-transformers==1.4.0).
PRETRAINED_PATHS = {
    "lstm_tagger_clusters": ("clusters", "clusters", "en_lexeme_cluster.json.gz"),
    "lstm_tagger_transformer": ("transformer", "minilm-pipeline", "all-MiniLM-L6-v2-spacy"),
}
# Systems trained with static vectors, and where the vectors come from:
# "floret" = floret vectors learned from the train corpus's own text
# (train_vectors.py); otherwise a resource of scripts/prepare_pretrained.py.
VECTORS_SYSTEMS = {
    "lstm_tagger_efficiency_vectors": "floret",
    "lstm_tagger_vectors": "md",
    "lstm_tagger_accuracy_vectors": "md",
    "lstm_tagger_glove": "glove",
    "lstm_tagger_distilled_vectors": "md",
}
PRETRAINED_DIRS = {"md": "en_core_web_md_vectors", "glove": "glove_6b_50d"}
# Distilled students: trained on the soft tags of a finished teacher system (trained first).
DISTILLED_SYSTEMS = {
    "lstm_tagger_distilled": ROOT / "configs" / "lstm_tagger_distilled.cfg",
    # the efficiency config with a 2x64 BiLSTM, taught by the efficiency and accuracy models
    "lstm_tagger_distilled_fast": ROOT / "configs" / "lstm_tagger_distilled_fast.cfg",
    # the frozen-transformer tagger's knowledge in a static-vectors model (issue 13)
    "lstm_tagger_distilled_vectors": ROOT / "configs" / "lstm_tagger_distilled_md_vectors.cfg",
}
# A list of several systems is an ensemble teacher (their mean probabilities).
TEACHERS = {
    "lstm_tagger_distilled": ["lstm_tagger_accuracy", "lstm_tagger_efficiency"],
    "lstm_tagger_distilled_fast": ["lstm_tagger_efficiency", "lstm_tagger_accuracy"],
    "lstm_tagger_distilled_vectors": ["lstm_tagger_transformer"],
}
# Another seed of a config (trained with --set system.seed=N): a member of an ensemble.
SEED_SYSTEMS = {"lstm_tagger_efficiency_seed1": ("lstm_tagger_efficiency", 1)}
SYSTEMS = {
    **MAIN_SYSTEMS, **FEATURE_SYSTEMS, **PRETRAINED_SYSTEMS, **DISTILLED_SYSTEMS,
    **{name: MAIN_SYSTEMS[config] for name, (config, _seed) in SEED_SYSTEMS.items()},
}
# Ensembles (spacy_lstm_tagger/ensemble.py: mean probabilities), assembled from
# trained member systems with `python -m spacy_lstm_tagger ensemble`; their
# training time is the longest member's (members train side by side, a core each).
ENSEMBLES = {
    "lstm_tagger_ensemble": ["lstm_tagger_efficiency", "lstm_tagger_efficiency_seed1"],
    "lstm_tagger_ensemble_eff_acc": ["lstm_tagger_efficiency", "lstm_tagger_accuracy"],
}


def every_member(system: str, settings: Dict[str, Any]) -> Dict:
    """Load-time overrides setting ``settings`` on each member of an ensemble system."""
    members = {f"member{i}": dict(settings) for i in range(len(ENSEMBLES[system]))}
    return {"components": {"lstm_tagger": {"model": {"*": members}}}}


# Inference-only variants: a trained system loaded with config overrides.
VARIANTS = {
    "lstm_tagger_efficiency_probs": ("lstm_tagger_efficiency", {"components": {"lstm_tagger": {"store_probabilities": True}}}),
    # int8 dynamic quantization (model setting quantize): its speed and accuracy cost
    "lstm_tagger_efficiency_int8": ("lstm_tagger_efficiency", {"components": {"lstm_tagger": {"model": {"quantize": True}}}}),
    "lstm_tagger_accuracy_int8": ("lstm_tagger_accuracy", {"components": {"lstm_tagger": {"model": {"quantize": True}}}}),
    # float32 everywhere (bfloat16 = false): the shipped configs' bfloat16 = "auto"
    # is bf16 where it is native (machine.native_bf16), float32 elsewhere
    "lstm_tagger_efficiency_fp32": ("lstm_tagger_efficiency", {"components": {"lstm_tagger": {"model": {"bfloat16": False}}}}),
    "lstm_tagger_ensemble_fp32": ("lstm_tagger_ensemble", every_member("lstm_tagger_ensemble", {"bfloat16": False})),
    # bfloat16 inference forced (bfloat16 = true, emulated and slow where not native)
    "lstm_tagger_efficiency_bf16": ("lstm_tagger_efficiency", {"components": {"lstm_tagger": {"model": {"bfloat16": True}}}}),
    "lstm_tagger_accuracy_bf16": ("lstm_tagger_accuracy", {"components": {"lstm_tagger": {"model": {"bfloat16": True}}}}),
    "lstm_tagger_distilled_bf16": ("lstm_tagger_distilled", {"components": {"lstm_tagger": {"model": {"bfloat16": True}}}}),
    "lstm_tagger_distilled_fast_bf16": ("lstm_tagger_distilled_fast", {"components": {"lstm_tagger": {"model": {"bfloat16": True}}}}),
    "lstm_tagger_ensemble_bf16": ("lstm_tagger_ensemble", every_member("lstm_tagger_ensemble", {"bfloat16": True})),
    "lstm_tagger_ensemble_eff_acc_bf16": (
        "lstm_tagger_ensemble_eff_acc", every_member("lstm_tagger_ensemble_eff_acc", {"bfloat16": True})),
    # spaCy's tagger with Thinc's NumpyOps(use_blis=False): its matrix products on
    # numpy's BLAS instead of blis. Where blis does not recognize the CPU it runs
    # its unoptimized 'generic' kernels (machine.blis_config), and spaCy's tagger
    # is 2-3x slower than on a machine where it does; this variant is spaCy's
    # tagger at its best there, the baseline of speed_ratio_vs_fastest_spacy.
    "spacy_tagger_numpy_blas": ("spacy_tagger", {}),
}
NUMPY_BLAS_VARIANTS = {"spacy_tagger_numpy_blas"}
BASELINE = "spacy_tagger"
SPACY_BASELINES = ("spacy_tagger", "spacy_tagger_numpy_blas")
DEFAULT_SYSTEMS = [*MAIN_SYSTEMS, "lstm_tagger_ensemble", "spacy_tagger_numpy_blas"]
# train docs tagged before each timed pass, after emptying the character
# caches: the timing sees a cache of frequent types of the domain, as a
# long-running process has, not one that already holds every dev word
CACHE_WARM_DOCS = 300


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB. On Linux from VmHWM in
    /proc/self/status: getrusage's ru_maxrss survives fork + exec, so a
    measuring child would report at least its parent's peak (the runner's,
    after it loaded pipelines to assemble an ensemble)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss() -> bool:
    """Start this process's peak RSS (VmHWM) again from its current RSS, so
    a later ``peak_rss_mb`` covers only what ran since (tagging, not the
    scoring before it: spaCy's ``nlp.evaluate`` alone took its tagger's
    measuring child from 0.4 to 1.0 GB). Linux >= 4.0 (``clear_refs``);
    False where that is not possible, and the peak then covers both."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def dir_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def make_timed_logger(jsonl_path: str, progress_bar: bool = False) -> Callable:
    """spaCy's console logger, plus one JSON line per evaluation with the wall
    time since training started (used for 'time to best dev score' and the plot)."""
    from spacy.training.loggers import console_logger

    console = console_logger(progress_bar=progress_bar)

    def setup(nlp, stdout=sys.stdout, stderr=sys.stderr):
        log_step, finalize = console(nlp, stdout, stderr)
        start = time.perf_counter()
        out = open(jsonl_path, "w", encoding="utf8")

        def log(info: Optional[Dict[str, Any]]) -> None:
            log_step(info)
            if info is not None:
                row = {
                    "epoch": info["epoch"], "step": info["step"], "score": info["score"],
                    "scores": info["other_scores"], "words": info["words"],
                    "seconds": round(time.perf_counter() - start, 2),
                }
                out.write(json.dumps(row) + "\n")
                out.flush()

        def close() -> None:
            finalize()
            out.close()

        return log, close

    return setup


def train_one(system: str, config_path: Path, train: str, dev: str, out_dir: Path, threads: int,
              max_steps: Optional[int] = None, vectors: Optional[str] = None, teacher: Optional[List[str]] = None,
              extra_overrides: Optional[Dict[str, str]] = None) -> None:
    """Train one system with ``spacy train`` machinery; write train_result.json."""
    import spacy  # noqa: F401  (registers spaCy's functions)
    import torch
    from spacy.cli.train import train as spacy_train
    from spacy.util import registry

    torch.set_num_threads(threads)
    registry.loggers.register("spacy_lstm_tagger.bench.TimedConsoleLogger.v1", func=make_timed_logger)
    from spacy.util import load_config

    out_dir.mkdir(parents=True, exist_ok=True)
    config = load_config(config_path, interpolate=False)
    if max_steps:
        config["training"]["max_steps"] = max_steps
    config["training"]["logger"] = {
        "@loggers": "spacy_lstm_tagger.bench.TimedConsoleLogger.v1",
        "jsonl_path": str(out_dir / "train_log.jsonl"),
        "progress_bar": False,
    }
    run_config = out_dir / "config.cfg"
    config.to_disk(run_config)
    start = time.perf_counter()
    overrides = {"paths.train": train, "paths.dev": dev}
    if vectors:
        overrides["paths.vectors"] = vectors
    if teacher:
        overrides["paths.teacher"] = teacher[0] if len(teacher) == 1 else list(teacher)
    overrides.update(extra_overrides or {})
    spacy_train(run_config, out_dir / "model", use_gpu=-1, overrides=overrides)
    write_train_result(system, config_path, out_dir, round(time.perf_counter() - start, 1), threads,
                       config["training"]["max_steps"], round(peak_rss_mb(), 1), teachers=teacher,
                       overrides=extra_overrides)


def write_train_result(system: str, config_path: Path, out_dir: Path, total: Optional[float], threads: int,
                       max_steps: int, rss_mb: Optional[float], stopped_at: Optional[int] = None,
                       teachers: Optional[List[str]] = None, overrides: Optional[Dict[str, Any]] = None) -> None:
    """train_result.json from the training log. ``stopped_at``: the training
    was stopped by hand (``finish-one``) before its budget; model-best is the
    best evaluation up to that step. ``overrides``: the ``--set`` values the
    config was trained with (e.g. another seed), so the record says so."""
    log = [json.loads(line) for line in (out_dir / "train_log.jsonl").open()]
    best = max(log, key=lambda row: row["score"])
    srsly.write_json(out_dir / "train_result.json", {
        "system": system, "config": str(config_path.relative_to(ROOT)),
        "train_seconds": best["seconds"], "train_total_seconds": total if total is not None else log[-1]["seconds"],
        "best_step": best["step"], "best_epoch": best["epoch"], "train_peak_rss_mb": rss_mb,
        "torch_threads": threads, "max_steps": max_steps,
        **({"stopped_at_step": stopped_at} if stopped_at is not None else {}),
        **({"teachers": list(teachers)} if teachers else {}),
        **({"overrides": dict(overrides)} if overrides else {}),
        "curve": [{"seconds": r["seconds"], "step": r["step"], "tag_acc": r["scores"].get("tag_acc")} for r in log],
    })


def assemble_one(system: str, work: Path) -> None:
    """Assemble an ensemble system from its trained members (ENSEMBLES) into
    ``work/system/model/model-best``, with a train_result.json: the members'
    training times (the longest is the ensemble's: they train side by side)."""
    from spacy_lstm_tagger.ensemble import assemble

    members = ENSEMBLES[system]
    out_dir = work / system
    nlp = assemble([work / m / "model" / "model-best" for m in members])
    (out_dir / "model").mkdir(parents=True, exist_ok=True)
    nlp.to_disk(out_dir / "model" / "model-best")
    results = [srsly.read_json(work / m / "train_result.json") for m in members]
    srsly.write_json(out_dir / "train_result.json", {
        "system": system, "config": " + ".join(r["config"] for r in results), "members": members,
        "train_seconds": max(r["train_seconds"] for r in results),
        "train_total_seconds": max(r["train_total_seconds"] for r in results),
        "members_train_seconds": {m: r["train_seconds"] for m, r in zip(members, results)},
        "best_step": None, "best_epoch": None,
        "train_peak_rss_mb": max((r["train_peak_rss_mb"] or 0) for r in results) or None,
        "torch_threads": results[0]["torch_threads"], "max_steps": max(r["max_steps"] for r in results),
        "curve": [],
    })


def teacher_names(train_result: Dict, work: Path) -> List[str]:
    """The systems (or paths) a distilled student was taught by: its
    training's record, else the benchmark's recipe (TEACHERS). A relative
    path in the record is relative to where ``train-one`` ran (the repo root)."""
    names = []
    for path in train_result.get("teachers", []):
        path = Path(path)
        inside = (path.resolve().parent.parent.parent == work.resolve()
                  and path.parts[-2:] == ("model", "model-best"))
        names.append(path.parent.parent.name if inside else str(path))
    return names or [t for t in TEACHERS.get(train_result["system"], [])]


def finish_one(system: str, out_dir: Path, threads: int) -> None:
    """Record a training stopped before its step budget (e.g. for lack of CPU
    time) from its log; the result says where it stopped."""
    if (out_dir / "train_result.json").exists():
        raise SystemExit(f"{out_dir} already has a finished training")
    log = [json.loads(line) for line in (out_dir / "train_log.jsonl").open()]
    if not (out_dir / "model" / "model-best").exists():
        raise SystemExit(f"{out_dir} has no model-best yet")
    max_steps = load_max_steps(out_dir / "config.cfg")
    write_train_result(system, SYSTEMS[system], out_dir, None, threads, max_steps, None, stopped_at=log[-1]["step"])
    print(f"[benchmark] {system}: recorded as stopped at step {log[-1]['step']} of {max_steps}")


def empty_char_caches(nlp) -> int:
    """Empty the character-encoding caches of every lstm_tagger in ``nlp``
    (and of their bfloat16 copies) and the process's cache of affix hashes
    (``featurize.affix_keys``); returns how many character caches there were."""
    from spacy_lstm_tagger.featurize import clear_affix_key_cache
    from spacy_lstm_tagger.model import clear_char_caches, tagger_models

    clear_affix_key_cache()
    return sum(
        clear_char_caches(pipe.model) for _name, pipe in nlp.pipeline
        if getattr(pipe, "model", None) is not None and tagger_models(pipe.model)
    )


def measure_one(model_dir: Path, dev: str, batch_size: int, repeats: int, threads: int, out_path: Path,
                overrides: Optional[Dict] = None, use_blis: bool = True, train: Optional[str] = None) -> None:
    """Score a trained pipeline on dev and time ``nlp.pipe`` over the dev texts.

    Before each timed pass the character caches are emptied and refilled from
    the first ``CACHE_WARM_DOCS`` docs of ``train`` (untimed), so no pass
    profits from the dev words an earlier pass cached."""
    import spacy
    import torch
    from spacy.training import Corpus
    from thinc.api import NumpyOps, set_current_ops

    torch.set_num_threads(threads)
    if not use_blis:
        set_current_ops(NumpyOps(use_blis=False))
    nlp = spacy.load(model_dir, config=overrides or {})
    examples = list(Corpus(dev, gold_preproc=True)(nlp))
    scores = nlp.evaluate(examples)
    ref_docs = list(Corpus(dev, gold_preproc=False)(nlp))
    doc_scores = nlp.evaluate(whole_documents(ref_docs))
    texts = [eg.reference.text for eg in ref_docs]
    warm_texts = [eg.reference.text for eg in Corpus(train, gold_preproc=False, limit=CACHE_WARM_DOCS)(nlp)] if train else texts[:50]
    n_words = sum(len(doc) for doc in nlp.tokenizer.pipe(texts))
    scoring_peak_mb = round(peak_rss_mb(), 1)
    del examples, ref_docs
    peak_is_tagging = reset_peak_rss()
    times = []
    for _ in range(repeats):
        n_caches = empty_char_caches(nlp)
        for _doc in nlp.pipe(warm_texts, batch_size=batch_size):
            pass
        start = time.perf_counter()
        for _doc in nlp.pipe(texts, batch_size=batch_size):
            pass
        times.append(time.perf_counter() - start)
    srsly.write_json(out_path, {
        "tag_acc": scores.get("tag_acc"), "pos_acc": scores.get("pos_acc"), "doc_tag_acc": doc_scores.get("tag_acc"),
        "n_words": n_words, "seconds": times, "inference_peak_rss_mb": round(peak_rss_mb(), 1),
        "inference_peak_rss_is_tagging_only": peak_is_tagging, "scoring_peak_rss_mb": scoring_peak_mb,
        "char_caches": n_caches, "cache_warm_docs": len(warm_texts), "thinc_gemm": "blis" if use_blis else "numpy",
        "machine": machine_info(),
    })


def whole_documents(examples: List) -> List:
    """The dev documents tagged whole, on their gold tokens: what a user's
    ``nlp(text)`` of a document sees (several sentences in one Doc), without
    the tokenizer's misalignments. ``tag_acc`` is scored on one Doc per
    sentence (``gold_preproc``), as the trainings see them."""
    from spacy.tokens import Doc
    from spacy.training import Example

    return [
        Example(Doc(eg.reference.vocab, words=[t.text for t in eg.reference],
                    spaces=[bool(t.whitespace_) for t in eg.reference]), eg.reference)
        for eg in examples
    ]


def single_threaded_env(threads: int) -> Dict[str, str]:
    """The environment of a timing child: every BLAS/OpenMP pool at ``threads``
    (torch's pool is set in the child), so no library of any system takes
    the other core."""
    import os

    return {**os.environ, **{name: str(threads) for name in (
        "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")}}


def prepare_vectors(source: str, train: str, work: Path, pretrained_dir: Path) -> Path:
    """The vectors pipeline for ``source``, built on first use."""
    if source == "floret":
        vectors_dir = work / "floret_vectors"
        if not (vectors_dir / "config.cfg").exists():
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_vectors.py"),
                            train, str(vectors_dir)], check=True)
        return vectors_dir
    vectors_dir = pretrained_dir / PRETRAINED_DIRS[source]
    if not (vectors_dir / "config.cfg").exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "prepare_pretrained.py"),
                        str(pretrained_dir), source], check=True)
    return vectors_dir


def parse_overrides(pairs: List[str]) -> Dict[str, Any]:
    """``KEY=VALUE`` pairs as ``spacy train``'s command line reads them: a
    value that parses as JSON is that value (192, true), anything else a string."""
    overrides: Dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            overrides[key] = srsly.json_loads(value)
        except ValueError:
            overrides[key] = value
    return overrides


def load_max_steps(config_path: Path) -> Optional[int]:
    from spacy.util import load_config

    return load_config(config_path, interpolate=False)["training"]["max_steps"]


def run(args: argparse.Namespace) -> Dict:
    work = Path(args.work_dir)
    results_path = Path(args.output)
    systems = args.systems or DEFAULT_SYSTEMS
    trained = list(dict.fromkeys(VARIANTS.get(s, (s,))[0] for s in systems))
    # a teacher trains before its student, the members before their ensemble
    trained = list(dict.fromkeys(
        [t for s in trained for t in TEACHERS.get(s, []) + ENSEMBLES.get(s, [])] + trained))
    # 1. train (resumable: a finished system keeps its train_result.json)
    for system in trained:
        out_dir = work / system
        if (out_dir / "train_result.json").exists() and not args.retrain:
            print(f"[benchmark] {system}: reusing finished training in {out_dir}", flush=True)
            continue
        if system in ENSEMBLES:
            print(f"[benchmark] {system}: assembling {' + '.join(ENSEMBLES[system])}", flush=True)
            assemble_one(system, work)
            continue
        print(f"[benchmark] {system}: training ({SYSTEMS[system].name})", flush=True)
        extra_args = []
        if system in VECTORS_SYSTEMS:
            vectors_dir = prepare_vectors(VECTORS_SYSTEMS[system], args.train, work, Path(args.pretrained_dir))
            extra_args = ["--vectors", str(vectors_dir)]
        if system in PRETRAINED_PATHS:
            key, resource, name = PRETRAINED_PATHS[system]
            path = Path(args.pretrained_dir) / name
            if not path.exists():
                subprocess.run([sys.executable, str(ROOT / "scripts" / "prepare_pretrained.py"),
                                args.pretrained_dir, resource], check=True)
            extra_args += ["--set", f"paths.{key}={path}"]
        if system in TEACHERS:
            extra_args += ["--teacher", *(str(work / t / "model" / "model-best") for t in TEACHERS[system])]
        subprocess.run([
            sys.executable, __file__, "train-one", system, "--train", args.train, "--dev", args.dev,
            "--work-dir", str(work), "--threads", str(args.threads), "--max-steps", str(args.max_steps or 0),
            *extra_args,
        ], check=True)
    # 2. score and time every system, interleaving the repeats across systems
    timings: Dict[str, List[float]] = {s: [] for s in systems}
    measured: Dict[str, Dict] = {}
    for round_ in range(args.rounds):
        for system in systems:
            source, overrides = VARIANTS.get(system, (system, {}))
            path = work / system / f"measure_{round_}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([
                sys.executable, __file__, "measure-one", str(work / source / "model" / "model-best"),
                "--dev", args.dev, "--train", args.train, "--batch-size", str(args.batch_size),
                "--repeats", str(args.repeats), "--threads", str(args.threads), "--out", str(path),
                "--overrides", json.dumps(overrides), *(["--no-blis"] if system in NUMPY_BLAS_VARIANTS else []),
            ], check=True, env=single_threaded_env(args.threads))
            measured[system] = srsly.read_json(path)
            timings[system].extend(measured[system]["seconds"])
    result = {
        "dataset": "UD_English-EWT 2.16", "split": "dev",
        "machine": {
            # as seen by the process that ran the last timing (CPU, ISA, torch/oneDNN/MKL, BLAS, threads)
            **measured[systems[-1]].get("machine", {}),
            "torch_threads": args.threads, "batch_size": args.batch_size,
            "timing": f"median of {args.rounds} rounds x {args.repeats} repeats, systems interleaved",
            "train_note": "1 torch thread per training, 2-core machine",
        },
        "systems": {},
    }
    for system in systems:
        source = VARIANTS.get(system, (system, {}))[0]
        train_result = srsly.read_json(work / source / "train_result.json")
        m = measured[system]
        median = statistics.median(timings[system])
        result["systems"][system] = {
            "config": train_result["config"],
            "tag_acc": round(100 * m["tag_acc"], 2),
            "pos_acc": None if m["pos_acc"] is None else round(100 * m["pos_acc"], 2),
            "doc_tag_acc": None if m.get("doc_tag_acc") is None else round(100 * m["doc_tag_acc"], 2),
            "words_per_second": round(m["n_words"] / median),
            "train_seconds": train_result["train_seconds"],
            "train_total_seconds": train_result["train_total_seconds"],
            "best_step": train_result["best_step"],
            "max_steps": train_result.get("max_steps") or load_max_steps(work / source / "config.cfg"),
            "peak_rss_mb": train_result["train_peak_rss_mb"],
            **({"stopped_at_step": train_result["stopped_at_step"]} if "stopped_at_step" in train_result else {}),
            **({"teachers": teacher_names(train_result, work)} if source in TEACHERS else {}),
            **({"members": train_result["members"]} if source in ENSEMBLES else {}),
            "inference_peak_rss_mb": m["inference_peak_rss_mb"],
            "model_mb": round(dir_size_mb(work / source / "model" / "model-best"), 2),
            "curve": train_result["curve"],
        }
    if BASELINE in result["systems"]:
        base = result["systems"][BASELINE]["words_per_second"]
        for system, row in result["systems"].items():
            row["speed_ratio_vs_spacy_tagger"] = round(row["words_per_second"] / base, 2)
    spacy_speeds = [result["systems"][s]["words_per_second"] for s in SPACY_BASELINES if s in result["systems"]]
    if len(spacy_speeds) > 1:
        fastest = max(spacy_speeds)
        for system, row in result["systems"].items():
            row["speed_ratio_vs_fastest_spacy"] = round(row["words_per_second"] / fastest, 2)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(results_path, result)
    print_table(result)
    plot(result, results_path.with_suffix(".png"))
    return result


def print_table(result: Dict) -> None:
    from wasabi import msg

    header = ["system", "tag_acc", "pos_acc", "doc tag_acc", "words/s", "x spacy", "x fastest spacy", "train s (best)", "peak RSS MB", "model MB"]
    rows = [
        [name, r["tag_acc"], r["pos_acc"], r.get("doc_tag_acc"), r["words_per_second"], r.get("speed_ratio_vs_spacy_tagger"),
         r.get("speed_ratio_vs_fastest_spacy"), r["train_seconds"], r["peak_rss_mb"], r["model_mb"]]
        for name, r in result["systems"].items()
    ]
    msg.table(rows, header=header, divider=True)


def plot(result: Dict, png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    for name, row in result["systems"].items():
        if name in VARIANTS:  # same training as its source system
            continue
        curve = [(c["seconds"] / 60, 100 * c["tag_acc"]) for c in row["curve"] if c["tag_acc"] is not None]
        if not curve:  # an ensemble: its score when its last member is trained
            ax1.scatter([row["train_seconds"] / 60], [row["tag_acc"]], marker="*", s=120, zorder=3,
                        label=f"{name} ({row['tag_acc']}; members side by side)")
            continue
        ax1.plot([c[0] for c in curve], [c[1] for c in curve], label=f"{name} ({row['tag_acc']})")
    ax1.set_xlabel(f"training wall time (minutes; {result['machine'].get('train_note', 'this machine')})")
    ax1.set_ylabel("dev tag_acc (%)")
    ax1.set_ylim(85, 97.5)
    ax1.grid(alpha=0.3)
    ax1.legend(loc="lower right")
    ax1.set_title("UD English EWT 2.16 dev accuracy vs training time")
    names = list(result["systems"])
    speeds = [result["systems"][n]["words_per_second"] for n in names]
    ax2.bar(range(len(names)), speeds, color=["tab:gray" if n in SPACY_BASELINES else "tab:blue" for n in names])
    ax2.set_xticks(range(len(names)), [n.replace("lstm_tagger_", "") for n in names], rotation=30, ha="right")
    for i, v in enumerate(speeds):
        ax2.text(i, v, f"{v:,}", ha="center", va="bottom", fontsize=8)
    ax2.set_ylabel("words / second (nlp.pipe, CPU)")
    ax2.set_title("Inference speed, same run")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    print(f"[benchmark] wrote {png_path}")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    p_one = sub.add_parser("train-one")
    p_one.add_argument("system", choices=list(SYSTEMS))
    p_one.add_argument("--max-steps", type=int, default=0, help="override the config's max_steps (0: keep)")
    p_one.add_argument("--vectors", default=None, help="pipeline with static vectors (paths.vectors)")
    p_one.add_argument("--teacher", nargs="+", default=None,
                       help="trained teacher pipeline(s) (paths.teacher; several: an ensemble), for distilled systems")
    p_one.add_argument("--config", default=None,
                       help="train this config instead of the system's own (e.g. an earlier version of it, to rebuild a teacher)")
    p_one.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="another config override, e.g. paths.clusters=assets/pretrained/en_lexeme_cluster.json.gz")
    p_finish = sub.add_parser("finish-one", help="record a training stopped before its budget")
    p_finish.add_argument("system", choices=list(SYSTEMS))
    p_meas = sub.add_parser("measure-one")
    p_meas.add_argument("model_dir")
    p_meas.add_argument("--out", required=True)
    p_meas.add_argument("--overrides", default="{}", help="JSON config overrides for spacy.load")
    p_meas.add_argument("--no-blis", action="store_true", help="Thinc's matrix products on numpy's BLAS, not blis")
    for p in (parser, p_one, p_meas, p_finish):
        p.add_argument("--train", default=str(ROOT / "corpus" / "en_ewt-ud-train.spacy"))
        p.add_argument("--dev", default=str(ROOT / "corpus" / "en_ewt-ud-dev.spacy"))
        p.add_argument("--work-dir", default=str(ROOT / "benchmarks" / "work"))
        p.add_argument("--threads", type=int, default=2, help="torch threads (CPU)")
        p.add_argument("--batch-size", type=int, default=256)
        p.add_argument("--repeats", type=int, default=3)
        p.add_argument("--pretrained-dir", default=str(ROOT / "assets" / "pretrained"),
                       help="where scripts/prepare_pretrained.py writes the pretrained resources")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--systems", nargs="*", choices=list(SYSTEMS) + list(ENSEMBLES) + list(VARIANTS),
                        help=f"default: {' '.join(DEFAULT_SYSTEMS)}")
    parser.add_argument("--retrain", action="store_true", help="ignore finished trainings")
    parser.add_argument("--max-steps", type=int, default=0, help="override every config's max_steps (0: keep)")
    parser.add_argument("--replot", action="store_true", help="only redraw the PNG from --output's JSON")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "ewt.json"))
    args = parser.parse_args(argv)
    if args.command == "train-one":
        config = Path(args.config).resolve() if args.config else SYSTEMS[args.system]
        # a seed system's seed, unless --set gives another
        seed = {"system.seed": SEED_SYSTEMS[args.system][1]} if args.system in SEED_SYSTEMS else {}
        train_one(args.system, config, args.train, args.dev, Path(args.work_dir) / args.system,
                  args.threads, args.max_steps, args.vectors, args.teacher, {**seed, **parse_overrides(args.set)})
    elif args.command == "finish-one":
        finish_one(args.system, Path(args.work_dir) / args.system, args.threads)
    elif args.command == "measure-one":
        measure_one(Path(args.model_dir), args.dev, args.batch_size, args.repeats, args.threads, Path(args.out),
                    json.loads(args.overrides), use_blis=not args.no_blis, train=args.train)
    elif args.replot:
        plot(srsly.read_json(args.output), Path(args.output).with_suffix(".png"))
    else:
        run(args)


if __name__ == "__main__":
    main()
