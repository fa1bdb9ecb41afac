"""What the benchmarks share: how a system's config is made, training it in
a child process, scoring and timing it in others, and writing the results.

A benchmark is a table of :class:`System` entries. Each trains with ``spacy
train``'s machinery in its own child process, with a logger that records the
wall time of every evaluation (for "time to best dev score" and the curves),
so the peak RSS (VmHWM) is that system's alone. Timing children run every
thread pool at the same count, and a benchmark times its systems in
interleaved rounds, so a slow spell of a shared machine hits all of them
alike. A finished training is kept in its folder (``train_result.json``) and
reused on a re-run; the folder's ``config.cfg`` says what it was trained with.
A child runs ``python benchmarks/harness.py FUNCTION KWARGS_JSON``.
"""
import argparse
import contextlib
import difflib
import gc
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

import srsly

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import machine_info  # noqa: E402

if TYPE_CHECKING:
    from thinc.api import Config

ROOT = Path(__file__).resolve().parent.parent
LOGGER = "spacy_lstm_tagger.bench.TimedConsoleLogger.v1"
RECORD = "train_result.json"
ACC_KEYS = ("tag_acc", "pos_acc", "morph_acc")
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
# train docs tagged before each timed pass, after emptying the character
# caches: the timing sees a cache of frequent types of the domain, as a
# long-running process has, not one that already holds every word timed
CACHE_WARM_DOCS = 300


@dataclass(frozen=True)
class System:
    """One system of a benchmark. Its config is exactly one of: ``preset``, a
    shipped preset (``spacy_lstm_tagger.presets``); ``file``, a config file
    relative to the repository root; ``factory``, what ``spacy init config -p
    FACTORY -o efficiency`` writes (the factory's defaults and spaCy's standard
    training block). Then ``overrides`` ({"section.key": value}) apply.
    ``resources``: ``[paths]`` keys the benchmark fills with prepared
    pretrained files; ``teachers``: systems whose trained pipelines become
    ``paths.teacher`` (trained first); ``stored_teacher``: a system whose
    trained pipeline's stored outputs (``teacher-outputs`` over the training
    corpus and the ``unlabeled`` resources) the system learns from."""

    preset: Optional[str] = None
    file: Optional[str] = None
    factory: Optional[str] = None
    overrides: Dict[str, Any] = field(default_factory=dict)
    resources: Dict[str, str] = field(default_factory=dict)
    teachers: Tuple[str, ...] = ()
    stored_teacher: Optional[str] = None
    unlabeled: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if sum(source is not None for source in (self.preset, self.file, self.factory)) != 1:
            raise ValueError("a System needs exactly one of preset, file, factory")

    def describe(self) -> str:
        """The results' ``config`` field: where the config comes from."""
        source = (f"preset {self.preset}" if self.preset else self.file if self.file
                  else f"spacy init config -p {self.factory} -o efficiency")
        return " ".join([source, *(f"{key}={value}" for key, value in self.overrides.items())])

    def config(self, lang: Optional[str] = None) -> "Config":
        """The system's own config (not interpolated), in ``lang`` if given."""
        from spacy.util import load_config, load_config_from_str

        if self.preset:
            from spacy_lstm_tagger.presets import preset_config

            return preset_config(self.preset, lang=lang, overrides=self.overrides)
        if self.file:
            config = load_config(ROOT / self.file, interpolate=False)
        else:
            from spacy.cli.init_config import init_config

            config = init_config(lang=lang or "en", pipeline=[self.factory], optimize="efficiency",
                                 gpu=False, silent=True)
        if lang:
            config["nlp"]["lang"] = lang
        return load_config_from_str(config.to_str(), overrides=self.overrides, interpolate=False)


def run_config(system: System, *, train: str, dev: str, log_path: Path, lang: Optional[str] = None,
               paths: Optional[Dict[str, Any]] = None, training: Optional[Dict[str, Any]] = None) -> "Config":
    """What ``system`` trains with in a benchmark: its own config, then what
    the benchmark sets for every system alike: the data (``[paths]``, gold
    tokens), its step policy (``training``) and the timed logger."""
    config = system.config(lang)
    config["paths"].update({"train": train, "dev": dev, **(paths or {})})
    for corpus in ("train", "dev"):
        config["corpora"][corpus]["gold_preproc"] = True
    config["training"].update(training or {})
    config["training"]["logger"] = {"@loggers": LOGGER, "jsonl_path": str(log_path), "progress_bar": False}
    return config


# ------------------------------------------------------------ measurements
def peak_rss_mb() -> float:
    """This process's peak resident memory in MB. On Linux from VmHWM in
    /proc/self/status: getrusage's ru_maxrss survives fork + exec, so a
    child would report at least its parent's peak."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss() -> bool:
    """Start the peak RSS (VmHWM) again from the current RSS, so a later
    ``peak_rss_mb`` covers only tagging, not the scoring before it (spaCy's
    ``nlp.evaluate`` alone can double a child's peak). Linux >= 4.0
    (``clear_refs``); False where not possible: the peak then covers both."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def dir_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def single_threaded_env(threads: int) -> Dict[str, str]:
    """A child's environment: every BLAS/OpenMP pool at ``threads`` (torch's
    is set in the child), so no library of any system takes another core."""
    env = {**os.environ, **{name: str(threads) for name in THREAD_ENV}}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def run_child(function: str, kwargs: Dict[str, Any], threads: int, log_path: Optional[Path] = None) -> None:
    """Run harness ``function(**kwargs)`` in a child process (its own peak RSS,
    its thread pools at ``threads``), its output appended to ``log_path`` (or
    on the console); RuntimeError if it fails."""
    cmd = [sys.executable, str(Path(__file__).resolve()), function, json.dumps(kwargs, default=str)]
    with log_path.open("a", encoding="utf8") if log_path else contextlib.nullcontext() as log:
        code = subprocess.run(cmd, env=single_threaded_env(threads), stdout=log,
                              stderr=subprocess.STDOUT if log else None).returncode
    if code:
        tail = log_path.read_text(encoding="utf8").strip().splitlines()[-1:] if log_path else []
        raise RuntimeError(f"{function} failed (exit {code})" + (f"; see {log_path}: {tail[0] if tail else ''}"
                                                                 if log_path else ""))


def make_timed_logger(jsonl_path: str, progress_bar: bool = False) -> Callable:
    """spaCy's console logger, plus one JSON line per evaluation with the wall
    time since training started."""
    from spacy.training.loggers import console_logger

    console = console_logger(progress_bar=progress_bar)

    def setup(nlp, stdout=sys.stdout, stderr=sys.stderr):
        log_step, finalize = console(nlp, stdout, stderr)
        start = time.perf_counter()
        out = open(jsonl_path, "w", encoding="utf8")

        def log(info: Optional[Dict[str, Any]]) -> None:
            log_step(info)
            if info is not None:
                out.write(json.dumps({
                    "epoch": info["epoch"], "step": info["step"], "score": info["score"],
                    "scores": info["other_scores"], "words": info["words"],
                    "seconds": round(time.perf_counter() - start, 2)}) + "\n")
                out.flush()

        def close() -> None:
            finalize()
            out.close()

        return log, close

    return setup


def best_checkpoint(log: List[Dict]) -> Dict:
    """The evaluation spaCy saved as model-best: the highest dev score, the
    LAST of equal ones (spaCy's loop saves on ``score == max(results)[0]``)."""
    best = max(log, key=lambda row: (row["score"], row["step"]))
    return {"train_seconds": best["seconds"], "best_step": best["step"], "best_epoch": best["epoch"],
            "best_dev_score": round(100 * best["score"], 2),
            "best_dev_scores": {k: round(100 * v, 2) for k, v in best["scores"].items()
                                if k in ACC_KEYS and v is not None}}


def write_record(out_dir: Path, total_seconds: Optional[float], threads: int, rss_mb: Optional[float],
                 stopped: bool = False) -> Dict:
    """``train_result.json`` from the training's timed log and config, with
    what the benchmark said about the system (``system.json``). ``stopped``:
    stopped by hand before its end; model-best is the best evaluation so far."""
    from spacy.util import load_config

    log = [json.loads(line) for line in (out_dir / "train_log.jsonl").open()]
    training = load_config(out_dir / "config.cfg", interpolate=False)["training"]
    meta = srsly.read_json(out_dir / "system.json") if (out_dir / "system.json").exists() else {}
    record = {
        **meta, **best_checkpoint(log),
        "train_total_seconds": log[-1]["seconds"] if total_seconds is None else total_seconds,
        "last_step": log[-1]["step"], "train_peak_rss_mb": rss_mb, "torch_threads": threads,
        **{key: training[key] for key in ("max_steps", "patience", "eval_frequency")},
        **({"stopped_at_step": log[-1]["step"]} if stopped else {}),
        "curve": [{"seconds": r["seconds"], "step": r["step"], "score": r["score"],
                   "tag_acc": r["scores"].get("tag_acc")} for r in log],
    }
    srsly.write_json(out_dir / RECORD, record)
    return record


def train_one(out_dir: Path, threads: int) -> None:
    """(child) Train ``out_dir/config.cfg`` into ``out_dir/model`` and record it."""
    import spacy  # noqa: F401  (registers spaCy's functions)
    import torch
    from spacy.cli.train import train
    from spacy.util import registry

    out_dir = Path(out_dir)
    torch.set_num_threads(threads)
    registry.loggers.register(LOGGER, func=make_timed_logger)
    start = time.perf_counter()
    train(out_dir / "config.cfg", out_dir / "model", use_gpu=-1)
    write_record(out_dir, round(time.perf_counter() - start, 1), threads, round(peak_rss_mb(), 1))


def finish_one(out_dir: Path, threads: int) -> Dict:
    """Record a training stopped before its end (e.g. for lack of CPU time) from its log."""
    if (out_dir / RECORD).exists():
        raise SystemExit(f"{out_dir} already has a finished training")
    if not (out_dir / "model" / "model-best").exists():
        raise SystemExit(f"{out_dir} has no model-best yet")
    return write_record(out_dir, None, threads, None, stopped=True)


def train_system(out_dir: Path, config: "Config", meta: Dict[str, Any], *, threads: int, say: Callable[[str], None],
                 force: bool = False, reuse_changed: bool = False, log_path: Optional[Path] = None) -> bool:
    """Train ``config`` in a child process unless ``out_dir`` holds a finished
    training of the same config (or of any, with ``reuse_changed``: the changed
    lines are said). Returns whether it trained."""
    if (out_dir / RECORD).exists() and not force:
        old, new = (out_dir / "config.cfg").read_text(encoding="utf8"), config.to_str()
        if old == new:
            say(f"reusing finished training in {out_dir}")
            return False
        if reuse_changed:
            changed = [line for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
                       if line[:1] in "+-" and line[:3] not in ("---", "+++")]
            say(f"reusing finished training in {out_dir} although its config now differs: {changed}")
            return False
        say("its config or the policy changed since the finished training: retraining")
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in (*out_dir.glob("*.json"), out_dir / "error.txt"):
        stale.unlink(missing_ok=True)
    config.to_disk(out_dir / "config.cfg")
    srsly.write_json(out_dir / "system.json", meta)
    say(f"training ({meta.get('config', '')})" + (f"; log {log_path}" if log_path else ""))
    run_child("train_one", {"out_dir": out_dir, "threads": threads}, threads, log_path)
    return True


def whole_documents(docs: List) -> List:
    """Examples of the reference docs tagged whole, on their gold tokens: what
    a user's ``nlp(text)`` of a document sees (several sentences in one Doc),
    without the tokenizer's misalignments."""
    from spacy.tokens import Doc
    from spacy.training import Example

    return [Example(Doc(ref.vocab, words=[t.text for t in ref], spaces=[bool(t.whitespace_) for t in ref]), ref)
            for ref in docs]


def empty_char_caches(nlp) -> int:
    """Empty the character-encoding caches of every lstm_tagger in ``nlp``
    (and of their bfloat16 copies) and the cache of affix hashes; returns how
    many character caches there were."""
    from spacy_lstm_tagger.featurize import clear_affix_key_cache
    from spacy_lstm_tagger.model import clear_char_caches, tagger_models

    clear_affix_key_cache()
    return sum(clear_char_caches(pipe.model) for _name, pipe in nlp.pipeline
               if getattr(pipe, "model", None) is not None and tagger_models(pipe.model))


def measure_one(model_dir: Path, corpus: str, out_path: Path, *, threads: int = 1, repeats: int = 3,
                batch_size: int = 256, overrides: Optional[Dict] = None, use_blis: bool = True,
                warm: Optional[str] = None, gold_words: bool = False, score: bool = True) -> Dict:
    """Score a pipeline on ``corpus`` (one Doc per sentence on gold tokens, and
    whole documents) and time ``nlp.pipe`` over its documents: their texts, or
    with ``gold_words`` Docs of their gold words (a language without spaces).
    Before each timed pass the character caches are emptied and refilled from
    the first ``CACHE_WARM_DOCS`` docs of ``warm`` (untimed)."""
    import spacy
    import torch
    from spacy.tokens import Doc
    from spacy.training import Corpus
    from thinc.api import NumpyOps, set_current_ops

    torch.set_num_threads(threads)
    if not use_blis:
        set_current_ops(NumpyOps(use_blis=False))
    nlp = spacy.load(model_dir, config=overrides or {})
    docs = [eg.reference for eg in Corpus(corpus)(nlp)]
    result: Dict[str, Any] = {}
    if score:
        scores = nlp.evaluate(list(Corpus(corpus, gold_preproc=True)(nlp)))
        result["scores"] = {**{k: scores.get(k) for k in ACC_KEYS},
                            "doc_tag_acc": nlp.evaluate(whole_documents(docs)).get("tag_acc")}
    warm_docs = [eg.reference for eg in Corpus(warm, limit=CACHE_WARM_DOCS)(nlp)] if warm else docs[:50]

    def inputs(refs: List) -> Any:
        if not gold_words:
            return (ref.text for ref in refs)
        return (Doc(nlp.vocab, words=[t.text for t in r], spaces=[bool(t.whitespace_) for t in r]) for r in refs)

    n_words = sum(len(d) for d in (docs if gold_words else nlp.tokenizer.pipe(inputs(docs))))
    scoring_peak_mb = round(peak_rss_mb(), 1)
    peak_is_tagging = reset_peak_rss()
    times = []
    for _ in range(repeats):
        n_caches = empty_char_caches(nlp)
        for _doc in nlp.pipe(inputs(warm_docs), batch_size=batch_size):
            pass
        start = time.perf_counter()
        for _doc in nlp.pipe(inputs(docs), batch_size=batch_size):
            pass
        times.append(time.perf_counter() - start)
    result.update({
        "n_words": n_words, "seconds": times, "inference_peak_rss_mb": round(peak_rss_mb(), 1),
        "inference_peak_rss_is_tagging_only": peak_is_tagging, "scoring_peak_rss_mb": scoring_peak_mb,
        "char_caches": n_caches if repeats else None, "cache_warm_docs": len(warm_docs),
        "thinc_gemm": "blis" if use_blis else "numpy", "machine": machine_info(),
    })
    srsly.write_json(out_path, result)
    return result


def measure_in_child(out_path: Path, threads: int, log_path: Optional[Path] = None, **kwargs: Any) -> Dict:
    """:func:`measure_one` in a child process; its results."""
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    run_child("measure_one", {"out_path": out_path, "threads": threads, **kwargs}, threads, log_path)
    return srsly.read_json(out_path)


# ----------------------------------------------------------------- results
def percent(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(100 * value, 2)


def machine_record(machine: Optional[Dict], **settings: Any) -> Dict:
    """The results' ``machine``: as a timing child saw it (CPU, ISA, torch,
    BLAS, threads; this process's view if none ran), plus the run's settings."""
    import spacy
    import thinc

    return {**(machine or machine_info()), "spacy": spacy.__version__, "thinc": thinc.__version__, **settings}


def write_results(result: Dict, output: Path, plot: Optional[Callable[[Dict, Path], None]] = None) -> None:
    """The results JSON, and its plot beside it (same name, .png)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output, result)
    if plot is not None:
        plot(result, output.with_suffix(".png"))


def add_run_options(parser: argparse.ArgumentParser, *, threads: int, work_dir: str, output: str) -> None:
    """The options every benchmark's run takes."""
    parser.add_argument("--threads", type=int, default=threads, help="torch/BLAS threads per child process")
    parser.add_argument("--repeats", type=int, default=3, help="nlp.pipe passes per timing child")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--work-dir", default=str(ROOT / "benchmarks" / work_dir))
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / output))
    parser.add_argument("--replot", action="store_true", help="only redraw the PNG from --output's JSON")


if __name__ == "__main__":
    # a child: one function of this module, its keyword arguments as JSON
    {"train_one": train_one, "measure_one": measure_one}[sys.argv[1]](**json.loads(sys.argv[2]))
