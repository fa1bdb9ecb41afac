"""Side-by-side benchmark on four small UD treebanks: spaCy's tagger and
morphologizer vs lstm_tagger, same data split, same training policy, same run.

For each treebank in ``--data-dir`` (nl_alpino, fi_tdt, ga_idt, zh_gsd) the
training file is ``*-ud-dev.conllu`` minus its last 10% of sentences, the dev
set (model selection, early stopping) is that last 10%, and every score is
measured on ``*-ud-test.conllu``. The split is made on CoNLL-U sentences
before spaCy's conllu converter groups them into docs of ``--n-sents``
sentences (the same for every system), and training uses gold tokens
(``gold_preproc``), like the EWT benchmark.

    python benchmarks/multilingual.py                      # all treebanks, default systems
    python benchmarks/multilingual.py --lstm small=configs/lstm_tagger_small.cfg \\
        --lstm lstm_tagger=configs/lstm_tagger_efficiency.cfg

Writes ``benchmarks/results/multilingual.json`` plus a PNG and prints a table.
Resumable: each finished training keeps its ``train_result.json`` and scores
under ``--work-dir`` (one folder per treebank and system) and is reused on a
re-run while its config is unchanged (``--force`` retrains); the results JSON
is rewritten as soon as each system finishes. To add a system, pass every
system you want in the JSON: finished ones are reused and only re-timed. Trainings and measurements run in child processes (peak RSS
per system); speed is timed after all trainings, systems interleaved, median.
"""
import argparse
import difflib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import srsly

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ewt_benchmark import dir_size_mb, make_timed_logger, peak_rss_mb, reset_peak_rss  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data" / "ud-small"
TREEBANKS = {"nl_alpino": "nl", "fi_tdt": "fi", "ga_idt": "ga", "zh_gsd": "zh"}
# spaCy's own components, configs made at run time by `spacy init config
# -p <factory> -o efficiency --lang <lang>` (what a user gets), gold_preproc on.
SPACY_SYSTEMS = {"spacy_tagger": "tagger", "spacy_morphologizer": "morphologizer"}
DEFAULT_LSTM = {
    "lstm_tagger": ROOT / "configs" / "lstm_tagger_small.cfg",
    "lstm_joint_tagger": ROOT / "configs" / "lstm_tagger_joint.cfg",
}
BASELINE = "spacy_tagger"
ACC_KEYS = ("tag_acc", "pos_acc", "morph_acc")
DEV_FRACTION = 0.1
LOGGER = "spacy_lstm_tagger.bench.TimedConsoleLogger.v1"
# Environment of every child process: one thread for torch and for BLAS.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


# ---------------------------------------------------------------- data split
def read_sentences(path: Path) -> List[str]:
    """The CoNLL-U sentence blocks of a file, split exactly like spaCy's
    conllu converter splits them (so block i is the converter's sentence i)."""
    text = path.read_text(encoding="utf8").strip()
    return [block for block in text.split("\n\n") if block.strip()] if text else []


def split_train_dev(sentences: List[str], dev_fraction: float = DEV_FRACTION) -> Tuple[List[str], List[str]]:
    """Hold out the LAST ``dev_fraction`` of the sentences (at least one) as dev."""
    if len(sentences) < 2:
        raise ValueError(f"need at least 2 sentences to hold out a dev set, got {len(sentences)}")
    n_dev = max(1, round(len(sentences) * dev_fraction))
    return sentences[:-n_dev], sentences[-n_dev:]


def count_empty_xpos(sentences: List[str]) -> int:
    """Tokens whose XPOS is ``_``: spaCy's converter gives them their UPOS as tag."""
    n = 0
    for block in sentences:
        for line in block.split("\n"):
            cols = line.split("\t")
            if len(cols) == 10 and cols[0].isdigit() and cols[4] == "_":
                n += 1
    return n


def find_treebank_files(data_dir: Path, treebank: str) -> Tuple[Path, Path]:
    folder = data_dir / treebank
    train, test = folder / f"{treebank}-ud-dev.conllu", folder / f"{treebank}-ud-test.conllu"
    for path in (train, test):
        if not path.is_file():
            raise SystemExit(f"[multilingual] missing {path}: --data-dir must hold {treebank}/{path.name} "
                             "(the ud-small treebanks)")
    return train, test


def write_docbin(sentences: List[str], path: Path, n_sents: int) -> int:
    """Convert CoNLL-U sentences with spaCy's conllu converter (what `spacy
    convert --converter conllu -n n_sents` does) into a .spacy file."""
    from spacy.tokens import DocBin
    from spacy.training.converters import conllu_to_docs

    docs = list(conllu_to_docs("\n\n".join(sentences) + "\n", n_sents=n_sents, no_print=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=True).to_disk(path)
    return sum(len(doc) for doc in docs)


def prepare_treebank(data_dir: Path, treebank: str, out_dir: Path, n_sents: int,
                     limit_sents: int = 0) -> Dict:
    """Split and convert one treebank into ``out_dir/{train,dev,eval}.spacy``;
    reused when ``split.json`` records the same inputs."""
    train_file, test_file = find_treebank_files(data_dir, treebank)
    key = {"train_file": str(train_file), "eval_file": str(test_file), "n_sents": n_sents,
           "limit_sents": limit_sents, "dev_fraction": DEV_FRACTION,
           "train_file_bytes": train_file.stat().st_size, "eval_file_bytes": test_file.stat().st_size}
    split_path = out_dir / "split.json"
    if split_path.exists():
        info = srsly.read_json(split_path)
        if all(info.get(k) == v for k, v in key.items()):
            return info
    sentences = read_sentences(train_file)
    eval_sents = read_sentences(test_file)
    if limit_sents:
        sentences, eval_sents = sentences[:limit_sents], eval_sents[:limit_sents]
    train, dev = split_train_dev(sentences)
    info = dict(key)
    for name, sents in (("train", train), ("dev", dev), ("eval", eval_sents)):
        n_words = write_docbin(sents, out_dir / f"{name}.spacy", n_sents)
        info[name] = {"path": str(out_dir / f"{name}.spacy"), "sentences": len(sents), "words": n_words,
                      "empty_xpos_tokens": count_empty_xpos(sents)}
    srsly.write_json(split_path, info)
    return info


# ------------------------------------------------------------------- configs
def training_policy(args: argparse.Namespace) -> Dict:
    return {"max_steps": args.max_steps, "patience": args.patience, "eval_frequency": args.eval_frequency,
            "max_epochs": 0}


def build_config(system: str, config_path: Optional[Path], lang: str, data: Dict, policy: Dict,
                 log_path: Path):
    """The config one system trains with: its own hyperparameters, this
    treebank's language and split, the shared early-stopping policy, gold
    tokens, and the timed logger (wall time to the best dev score)."""
    from spacy.util import load_config

    if system in SPACY_SYSTEMS:
        from spacy.cli.init_config import init_config

        config = init_config(lang=lang, pipeline=[SPACY_SYSTEMS[system]], optimize="efficiency",
                             gpu=False, silent=True)
    else:
        config = load_config(config_path, interpolate=False)
    config["nlp"]["lang"] = lang
    config["paths"]["train"] = data["train"]["path"]
    config["paths"]["dev"] = data["dev"]["path"]
    for corpus in ("train", "dev"):
        config["corpora"][corpus]["gold_preproc"] = True
    config["training"].update(policy)
    config["training"]["logger"] = {"@loggers": LOGGER, "jsonl_path": str(log_path), "progress_bar": False}
    if system == "spacy_tagger" and negative_looking_tags(data, config["components"]["tagger"]["neg_prefix"]):
        # A gold tag like ga_idt's "!" starts with the tagger's neg_prefix ("!"), so Thinc's loss reads it as
        # "not ''" and fails with KeyError: ''. An empty prefix turns negative labels off (spaCy's own setting).
        config["components"]["tagger"]["neg_prefix"] = ""
    return config


def negative_looking_tags(data: Dict, neg_prefix: str) -> List[str]:
    """The train/dev tags that start with ``neg_prefix``: a tagger that keeps
    the prefix would read them as negative labels."""
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    if not neg_prefix:
        return []
    vocab = Vocab()
    return sorted({t.tag_ for split in ("train", "dev") for doc in DocBin().from_disk(data[split]["path"]).get_docs(vocab)
                   for t in doc if t.tag_.startswith(neg_prefix)})


# ----------------------------------------------------------- child processes
def train_one(out_dir: Path, eval_path: Path, threads: int, batch_size: int) -> None:
    """Train ``out_dir/config.cfg`` with ``spacy train`` machinery; write
    train_result.json (best dev score, its step and wall time), then score
    model-best on the eval file (eval.json) in the same process."""
    import spacy  # noqa: F401  (registers spaCy's functions)
    import torch
    from spacy.cli.train import train as spacy_train
    from spacy.util import load_config, registry

    torch.set_num_threads(threads)
    registry.loggers.register(LOGGER, func=make_timed_logger)
    start = time.perf_counter()
    spacy_train(out_dir / "config.cfg", out_dir / "model", use_gpu=-1)
    write_train_result(out_dir, round(time.perf_counter() - start, 1), threads)
    measure_one(out_dir / "model" / "model-best", eval_path, out_dir / "eval.json", threads, 1, batch_size, True)


def finish_one(out_dir: Path, eval_path: Path, threads: int, batch_size: int) -> None:
    """For a training stopped before its early stopping ended it (a time
    limit): record what its log shows, marked ``stopped_before_patience``, and
    score its model-best (the best dev score so far) on the eval file."""
    log = [json.loads(line) for line in (out_dir / "train_log.jsonl").open()]
    write_train_result(out_dir, log[-1]["seconds"], threads, stopped_before_patience=True)
    measure_one(out_dir / "model" / "model-best", eval_path, out_dir / "eval.json", threads, 1, batch_size, True)


def write_train_result(out_dir: Path, total_seconds: float, threads: int, stopped_before_patience: bool = False) -> None:
    """train_result.json from the training's timed log: best dev score, its step and wall time."""
    from spacy.util import load_config

    log = [json.loads(line) for line in (out_dir / "train_log.jsonl").open()]
    training = load_config(out_dir / "config.cfg", interpolate=False)["training"]
    srsly.write_json(out_dir / "train_result.json", {
        **best_checkpoint(log), "train_total_seconds": total_seconds, "last_step": log[-1]["step"],
        "stopped_before_patience": stopped_before_patience,
        "train_peak_rss_mb": round(peak_rss_mb(), 1), "torch_threads": threads,
        "max_steps": training["max_steps"], "patience": training["patience"],
        "eval_frequency": training["eval_frequency"],
        "curve": [{"seconds": r["seconds"], "step": r["step"], "score": r["score"]} for r in log],
    })


def best_checkpoint(log: List[Dict]) -> Dict:
    """The evaluation spaCy saved as model-best: the highest dev score, the
    LAST of equal ones (spaCy's loop saves on ``score == max(results)[0]``)."""
    best = max(log, key=lambda row: (row["score"], row["step"]))
    return {"train_seconds": best["seconds"], "best_step": best["step"], "best_epoch": best["epoch"],
            "best_dev_score": round(100 * best["score"], 2),
            "best_dev_scores": {k: round(100 * v, 2) for k, v in best["scores"].items()
                                if k in ACC_KEYS and v is not None}}


def eval_docs(nlp, path: Path) -> List[Tuple[List[str], List[bool]]]:
    """Gold words and spaces of each eval doc (what nlp.pipe is timed on: the
    gold tokenization, since Chinese has no whitespace to tokenize on)."""
    from spacy.training import Corpus

    return [([t.text for t in eg.reference], [bool(t.whitespace_) for t in eg.reference])
            for eg in Corpus(str(path), gold_preproc=False)(nlp)]


def measure_one(model_dir: Path, eval_path: Path, out_path: Path, threads: int, repeats: int,
                batch_size: int, score: bool) -> None:
    """Score model-best on the eval file (gold tokens) and time ``nlp.pipe``
    over the eval docs, ``repeats`` times."""
    import spacy
    import torch
    from spacy.tokens import Doc
    from spacy.training import Corpus

    torch.set_num_threads(threads)
    nlp = spacy.load(model_dir)
    result: Dict = {}
    if score:
        scores = nlp.evaluate(list(Corpus(str(eval_path), gold_preproc=True)(nlp)))
        result["scores"] = {k: scores.get(k) for k in ACC_KEYS}
    docs = eval_docs(nlp, eval_path)
    result["inference_peak_rss_is_tagging_only"] = reset_peak_rss()
    list(nlp.pipe((Doc(nlp.vocab, words=w, spaces=s) for w, s in docs[:5]), batch_size=batch_size))  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _doc in nlp.pipe((Doc(nlp.vocab, words=w, spaces=s) for w, s in docs), batch_size=batch_size):
            pass
        times.append(time.perf_counter() - start)
    result.update({"n_words": sum(len(w) for w, _ in docs), "seconds": times,
                   "inference_peak_rss_mb": round(peak_rss_mb(), 1)})
    srsly.write_json(out_path, result)


def child(args: List[str], threads: int, log_path: Optional[Path] = None) -> None:
    env = dict(os.environ, **{name: str(threads) for name in THREAD_ENV})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    if log_path is None:
        subprocess.run(cmd, check=True, env=env)
        return
    with log_path.open("a", encoding="utf8") as log:
        proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:4])} failed (exit {proc.returncode}); see {log_path}")


# --------------------------------------------------------------------- run
def parse_lstm(values: Optional[List[str]]) -> Dict[str, Path]:
    if not values:
        return dict(DEFAULT_LSTM)
    systems = {}
    for value in values:
        name, sep, cfg = value.partition("=")
        if not sep or not name or not cfg:
            raise SystemExit(f"[multilingual] --lstm takes name=path/to/config.cfg, got {value!r}")
        if name in SPACY_SYSTEMS or name in systems:
            raise SystemExit(f"[multilingual] --lstm name {name!r} is already taken")
        path = Path(cfg)
        if not path.is_absolute() and not path.is_file():
            path = ROOT / cfg  # relative to the repository root, like project.yml's commands
        if not path.is_file():
            raise SystemExit(f"[multilingual] --lstm {name}: config {cfg} not found")
        systems[name] = path.resolve()
    return systems


def relpath(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def machine_info(args: argparse.Namespace) -> Dict:
    import spacy
    import thinc
    import torch

    return {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "python": platform.python_version(), "spacy": spacy.__version__,
        "thinc": thinc.__version__, "torch": torch.__version__, "torch_threads": args.threads,
        "batch_size": args.batch_size,
        "timing": f"median of {args.rounds} rounds x {args.repeats} repeats of nlp.pipe over the eval docs "
                  "(gold tokens), systems interleaved per treebank, 1 child process per measurement",
        "train_note": f"{args.threads} torch thread(s) per training, one training at a time; shared 2-core "
                      "machine: train_seconds are upper bounds",
    }


def notes(systems: Dict[str, Optional[Path]], splits: Dict[str, Dict], errors: Dict) -> List[str]:
    out = [
        "Train = *-ud-dev.conllu minus its last 10% of sentences; dev (early stopping, model-best) = that "
        "last 10%; every accuracy is on *-ud-test.conllu (eval), percent. The split is made on CoNLL-U "
        "sentences before spaCy's conllu converter groups them into docs (same n_sents for all systems).",
        "Gold tokens everywhere (gold_preproc = true in training; eval docs built from the gold words). "
        "zh uses spaCy's blank Chinese pipeline; its character segmenter is never used on gold tokens.",
        "spacy_tagger / spacy_morphologizer: the config `spacy init config -p tagger|morphologizer "
        "-o efficiency --lang <lang>` makes (generated at run time, saved in the work dir), gold_preproc on.",
        "Every system's own batcher/optimizer/dropout; the early-stopping policy in settings is the same for "
        "all. Accuracy keys a system does not predict are null (spaCy's tagger sets no pos/morph; "
        "lstm_tagger sets pos only with joint_pos and morph only with a FEATS head).",
    ]
    empty = {tb: s["train"]["empty_xpos_tokens"] + s["dev"]["empty_xpos_tokens"] for tb, s in splits.items()}
    empty_eval = {tb: s["eval"]["empty_xpos_tokens"] for tb, s in splits.items()}
    if any(empty.values()) or any(empty_eval.values()):
        which = ", ".join(f"{tb}: {n} train+dev / {empty_eval[tb]} eval tokens"
                          for tb, n in empty.items() if n or empty_eval[tb])
        out.append(
            "Tokens with XPOS `_` (" + which + "): spaCy 3.8's conllu converter gives them their UPOS as tag "
            "(`tag = pos if tag == '_'`), so no tag is empty after conversion (the empty-tag path of "
            "Tagger.get_loss is never reached); those tokens carry UPOS names (e.g. 'VERB') as extra tag labels, "
            "in training and in eval alike, for every system.")
    for tb, s in splits.items():
        if "spacy_tagger" in systems and negative_looking_tags(s, "!"):
            out.append(
                f"{tb}: spacy_tagger trained with neg_prefix = \"\" (spaCy's default is \"!\"): the gold tags "
                f"{negative_looking_tags(s, '!')} start with \"!\", which spaCy 3.8's tagger passes to Thinc's loss as "
                "negative labels (\"not ''\"), so training fails with KeyError: ''. The empty prefix turns negative "
                "labels off; nothing else changes. Other systems keep their configured neg_prefix.")
    for (tb, system), err in errors.items():
        out.append(f"{system} on {tb} failed: {err}")
    return out


def collect(args: argparse.Namespace, work: Path, systems: Dict[str, Optional[Path]], splits: Dict[str, Dict],
            errors: Dict, timings: Optional[Dict] = None) -> Dict:
    """The results JSON from whatever is finished in the work dir."""
    result: Dict = {
        "machine": machine_info(args),
        "settings": {
            "data_dir": str(args.data_dir), "dev_fraction": DEV_FRACTION, "n_sents_per_doc": args.n_sents,
            "limit_sents": args.limit_sents, "gold_preproc": True, **training_policy(args),
            "policy_note": "spaCy's early stopping: stop when the dev score has not improved for `patience` "
                           "steps, evaluating every `eval_frequency` steps, at most `max_steps`; model-best "
                           "(best dev score) is evaluated. Same for every system.",
            "systems": {name: (relpath(cfg) if cfg else f"spacy init config -p {SPACY_SYSTEMS[name]} -o efficiency")
                        for name, cfg in systems.items()},
            "splits": {tb: {k: {kk: vv for kk, vv in s[k].items() if kk != "path"}
                            for k in ("train", "dev", "eval")} for tb, s in splits.items()},
        },
        "notes": notes(systems, splits, errors),
        "complete": False,
        "treebanks": {},
        "margins": {},
    }
    for tb in splits:
        rows: Dict[str, Dict] = {}
        for system in systems:
            sdir = work / tb / system
            if (tb, system) in errors:
                rows[system] = {"error": errors[(tb, system)]}
                continue
            if not (sdir / "train_result.json").exists() or not (sdir / "eval.json").exists():
                continue
            train = srsly.read_json(sdir / "train_result.json")
            train.update(best_checkpoint([json.loads(line) for line in (sdir / "train_log.jsonl").open()]))
            ev = srsly.read_json(sdir / "eval.json")
            timed = (timings or {}).get((tb, system))
            seconds = timed["seconds"] if timed else ev["seconds"]
            row = {k: None if ev["scores"].get(k) is None else round(100 * ev["scores"][k], 2) for k in ACC_KEYS}
            row.update({
                "words_per_second": round(ev["n_words"] / statistics.median(seconds)),
                "timing": "interleaved" if timed else "preliminary (one pass after training, not interleaved)",
                "train_seconds": train["train_seconds"], "train_total_seconds": train["train_total_seconds"],
                "best_dev_score": train["best_dev_score"], "best_dev_scores": train["best_dev_scores"],
                "best_step": train["best_step"], "last_step": train["last_step"],
                "stopped_before_patience": train.get("stopped_before_patience", False),
                "train_peak_rss_mb": train["train_peak_rss_mb"],
                "inference_peak_rss_mb": timed["inference_peak_rss_mb"] if timed else None,
                "model_mb": round(dir_size_mb(sdir / "model" / "model-best"), 2),
                "config": result["settings"]["systems"][system],
            })
            rows[system] = row
        base = rows.get(BASELINE, {})
        for system, row in rows.items():
            if "error" in row or "error" in base or not base:
                continue
            row["speed_ratio_vs_spacy_tagger"] = round(row["words_per_second"] / base["words_per_second"], 2)
            if system != BASELINE and row["tag_acc"] is not None and base.get("tag_acc") is not None:
                row["margin"] = round(row["tag_acc"] - base["tag_acc"], 2)
                result["margins"].setdefault(tb, {})[system] = row["margin"]
        result["treebanks"][tb] = rows
    result["complete"] = all(rows.get(s, {}).get("timing") == "interleaved"
                             for rows in result["treebanks"].values() for s in systems)
    return result


def write_results(result: Dict, output: Path, plot_png: bool = True) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output, result)
    if plot_png:
        plot(result, output.with_suffix(".png"))


def run(args: argparse.Namespace) -> Dict:
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise SystemExit(f"[multilingual] data directory {data_dir} not found: pass --data-dir with the ud-small "
                         f"treebanks ({', '.join(TREEBANKS)})")
    work, output = Path(args.work_dir).resolve(), Path(args.output)
    lstm = parse_lstm(args.lstm)
    systems: Dict[str, Optional[Path]] = {name: None for name in SPACY_SYSTEMS}
    systems.update(lstm)
    if args.systems:
        unknown = [s for s in args.systems if s not in systems]
        if unknown:
            raise SystemExit(f"[multilingual] unknown --systems {unknown}: choose from {list(systems)}")
        systems = {s: systems[s] for s in args.systems}
    treebanks = args.treebanks or list(TREEBANKS)
    unknown = [tb for tb in treebanks if tb not in TREEBANKS]
    if unknown:
        raise SystemExit(f"[multilingual] unknown --treebanks {unknown}: choose from {list(TREEBANKS)}")
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / "progress.log"

    def say(text: str) -> None:
        line = f"[multilingual {time.strftime('%H:%M:%S')}] {text}"
        print(line, flush=True)
        with log_path.open("a", encoding="utf8") as log:
            log.write(line + "\n")

    splits = {tb: prepare_treebank(data_dir, tb, work / tb / "data", args.n_sents, args.limit_sents)
              for tb in treebanks}
    for tb, s in splits.items():
        say(f"{tb}: train {s['train']['sentences']} / dev {s['dev']['sentences']} / eval {s['eval']['sentences']} "
            f"sentences ({s['train']['words']} / {s['dev']['words']} / {s['eval']['words']} words)")
    policy = training_policy(args)
    errors: Dict[Tuple[str, str], str] = {}
    # 1. train and score, one system at a time over all treebanks (spaCy's baselines first)
    for system, cfg in systems.items():
        for tb in treebanks:
            if args.collect_only:
                if (work / tb / system / "error.txt").exists():
                    errors[(tb, system)] = (work / tb / system / "error.txt").read_text(encoding="utf8")
                continue
            sdir = work / tb / system
            config = build_config(system, cfg, TREEBANKS[tb], splits[tb], policy, sdir / "train_log.jsonl")
            done = (sdir / "train_result.json").exists() and (sdir / "eval.json").exists()
            if done and not args.force:
                old = (sdir / "config.cfg").read_text(encoding="utf8")
                if old == config.to_str():
                    say(f"{tb} {system}: reusing finished training in {sdir}")
                    continue
                if args.reuse_trainings:
                    changed = [line for line in difflib.unified_diff(old.splitlines(), config.to_str().splitlines(),
                                                                    lineterm="", n=0)
                               if line[:1] in "+-" and line[:3] not in ("---", "+++")]
                    say(f"{tb} {system}: reusing finished training (--reuse-trainings) although its config "
                        f"now differs: {changed}")
                    continue
                say(f"{tb} {system}: its config or the policy changed since the finished training: retraining")
            sdir.mkdir(parents=True, exist_ok=True)
            for stale in ("train_result.json", "eval.json", "error.txt", *(p.name for p in sdir.glob("timing_*.json"))):
                (sdir / stale).unlink(missing_ok=True)
            config.to_disk(sdir / "config.cfg")
            say(f"{tb} {system}: training ({relpath(cfg) if cfg else 'spacy init config'}; log {sdir / 'train.log'})")
            try:
                child(["train-one", str(sdir), "--eval", splits[tb]["eval"]["path"], "--threads", str(args.threads),
                       "--batch-size", str(args.batch_size)], args.threads, sdir / "train.log")
            except RuntimeError as err:
                tail = (sdir / "train.log").read_text(encoding="utf8").strip().splitlines()[-1:]
                errors[(tb, system)] = f"{err}: {tail[0] if tail else ''}"
                (sdir / "error.txt").write_text(errors[(tb, system)], encoding="utf8")
                say(f"{tb} {system}: FAILED {errors[(tb, system)]}")
                continue
            train = srsly.read_json(sdir / "train_result.json")
            scores = srsly.read_json(sdir / "eval.json")["scores"]
            say(f"{tb} {system}: done, best dev {train['best_dev_score']} at step {train['best_step']} "
                f"({train['train_seconds']} s), eval " + ", ".join(
                    f"{k} {100 * v:.2f}" for k, v in scores.items() if v is not None))
            write_results(collect(args, work, systems, splits, errors), output, plot_png=False)
    # 2. time every system, interleaved within each treebank
    timings: Dict[Tuple[str, str], Dict] = {}
    for round_ in range(args.rounds):
        for tb in treebanks:
            for system in systems:
                sdir = work / tb / system
                if (tb, system) in errors or not (sdir / "eval.json").exists():
                    continue
                path = sdir / f"timing_{round_}.json"
                if args.collect_only:
                    if not path.exists():
                        continue
                else:
                    child(["measure-one", str(sdir / "model" / "model-best"), "--eval", splits[tb]["eval"]["path"],
                          "--out", str(path), "--threads", str(args.threads), "--repeats", str(args.repeats),
                          "--batch-size", str(args.batch_size)], args.threads)
                timed = srsly.read_json(path)
                row = timings.setdefault((tb, system), {"seconds": [], "inference_peak_rss_mb": 0.0})
                row["seconds"].extend(timed["seconds"])
                row["inference_peak_rss_mb"] = max(row["inference_peak_rss_mb"], timed["inference_peak_rss_mb"])
        if not args.collect_only:
            say(f"timing round {round_ + 1}/{args.rounds} done")
    result = collect(args, work, systems, splits, errors, timings)
    write_results(result, output)
    print_table(result)
    say(f"wrote {output} and {output.with_suffix('.png')}")
    return result


# ------------------------------------------------------------ table, plot
def print_table(result: Dict) -> None:
    from wasabi import msg

    header = ["treebank", "system", "tag_acc", "pos_acc", "morph_acc", "margin", "words/s", "x spacy",
              "train s", "best dev", "step"]
    rows = []
    for tb, systems in result["treebanks"].items():
        for name, r in systems.items():
            if "error" in r:
                rows.append([tb, name, "error", "", "", "", "", "", "", "", ""])
                continue
            rows.append([tb, name, r["tag_acc"], r["pos_acc"], r["morph_acc"], r.get("margin"),
                         r["words_per_second"], r.get("speed_ratio_vs_spacy_tagger"), r["train_seconds"],
                         r["best_dev_score"], r["best_step"]])
    msg.table(rows, header=header, divider=True)


def plot(result: Dict, png_path: Path) -> None:
    """Grouped bars per treebank: tag_acc, pos_acc, morph_acc, words/s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches
    import matplotlib.pyplot as plt

    treebanks = list(result["treebanks"])
    systems = list(dict.fromkeys(s for rows in result["treebanks"].values() for s in rows))
    metrics = [("tag_acc", "tag_acc (%)"), ("pos_acc", "pos_acc (%)"), ("morph_acc", "morph_acc (%)"),
               ("words_per_second", "words / second (nlp.pipe, 1 thread)")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (key, label) in zip(axes, metrics):
        shown = [s for s in systems if any(result["treebanks"][tb].get(s, {}).get(key) is not None
                                           for tb in treebanks)]
        width = 0.8 / max(1, len(shown))
        values = []
        for j, system in enumerate(shown):
            xs, ys = [], []
            for i, tb in enumerate(treebanks):
                v = result["treebanks"][tb].get(system, {}).get(key)
                if v is not None:
                    xs.append(i + (j - (len(shown) - 1) / 2) * width)
                    ys.append(v)
            values.extend(ys)
            ax.bar(xs, ys, width, label=system, color=colors[systems.index(system) % len(colors)])
            for x, y in zip(xs, ys):
                ax.text(x, y, f"{y:,.0f}" if key == "words_per_second" else f"{y:.1f}", ha="center",
                        va="bottom", fontsize=7, rotation=90)
        if values and key != "words_per_second":
            ax.set_ylim(max(0, min(values) - 5), min(100.5, max(values) + 3))
        elif values:
            ax.set_ylim(0, max(values) * 1.2)
        ax.set_xticks(range(len(treebanks)), treebanks)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(label.split(" (")[0] + " on UD test")
    handles = [matplotlib.patches.Patch(color=colors[i % len(colors)], label=s) for i, s in enumerate(systems)]
    fig.legend(handles=handles, loc="lower center", ncol=len(systems), fontsize=9)
    fig.suptitle("Small UD treebanks: train on UD dev minus last 10%, evaluated on UD test (same run)")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(png_path, dpi=110)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    p_train = sub.add_parser("train-one", help="(child process) train <dir>/config.cfg")
    p_train.add_argument("out_dir")
    p_train.add_argument("--eval", required=True)
    p_finish = sub.add_parser("finish-one", help="record and score a training stopped before its patience ran out")
    p_finish.add_argument("out_dir")
    p_finish.add_argument("--eval", required=True)
    p_meas = sub.add_parser("measure-one", help="(child process) score and time a trained pipeline")
    p_meas.add_argument("model_dir")
    p_meas.add_argument("--eval", required=True)
    p_meas.add_argument("--out", required=True)
    p_meas.add_argument("--score", action="store_true", help="also score accuracy on --eval")
    for p in (parser, p_train, p_finish, p_meas):
        p.add_argument("--threads", type=int, default=1, help="torch/BLAS threads per child process")
        p.add_argument("--repeats", type=int, default=3, help="nlp.pipe passes per timing child")
        p.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                        help="folder with nl_alpino/, fi_tdt/, ga_idt/, zh_gsd/ (default: ../shared/data/ud-small)")
    parser.add_argument("--treebanks", nargs="*", help=f"default: {' '.join(TREEBANKS)}")
    parser.add_argument("--lstm", action="append", metavar="NAME=CONFIG",
                        help="an lstm_tagger system (repeatable); default lstm_tagger=configs/lstm_tagger_small.cfg and lstm_joint_tagger=configs/lstm_tagger_joint.cfg")
    parser.add_argument("--systems", nargs="*", help="only these systems (default: spaCy's two + every --lstm)")
    parser.add_argument("--n-sents", type=int, default=10, help="sentences per doc (spacy convert -n)")
    parser.add_argument("--limit-sents", type=int, default=0, help="use only the first N sentences of each file (tests)")
    parser.add_argument("--max-steps", type=int, default=10000)
    parser.add_argument("--patience", type=int, default=1000)
    parser.add_argument("--eval-frequency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--force", action="store_true", help="retrain finished systems")
    parser.add_argument("--work-dir", default=str(ROOT / "benchmarks" / "work_multilingual"))
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "multilingual.json"))
    parser.add_argument("--replot", action="store_true", help="only redraw the PNG from --output's JSON")
    parser.add_argument("--reuse-trainings", action="store_true",
                        help="reuse finished trainings even where the config text changed since (the changed "
                             "lines are logged): e.g. inference-only settings added with their default values")
    parser.add_argument("--collect-only", action="store_true",
                        help="train and time nothing: rebuild the JSON, PNG and table from the work dir "
                             "(its timing_<round>.json files, rounds < --rounds)")
    args = parser.parse_args(argv)
    if args.command == "train-one":
        train_one(Path(args.out_dir), Path(args.eval), args.threads, args.batch_size)
    elif args.command == "finish-one":
        finish_one(Path(args.out_dir), Path(args.eval), args.threads, args.batch_size)
    elif args.command == "measure-one":
        measure_one(Path(args.model_dir), Path(args.eval), Path(args.out), args.threads, args.repeats,
                    args.batch_size, args.score)
    elif args.replot:
        result = srsly.read_json(args.output)
        plot(result, Path(args.output).with_suffix(".png"))
    else:
        run(args)


if __name__ == "__main__":
    main()
