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
    python benchmarks/multilingual.py --lstm small=small --lstm mine=path/to/config.cfg

Writes ``benchmarks/results/multilingual.json`` plus a PNG and prints a table.
Resumable: each finished training keeps its ``train_result.json`` and scores
under ``--work-dir`` (one folder per treebank and system) and is reused on a
re-run while its config is unchanged (``--force`` retrains); the results JSON
is rewritten as soon as each system finishes. To add a system, pass every
system you want in the JSON: finished ones are reused and only re-timed.
Trainings and measurements run in child processes (``harness.py``: peak RSS
per system); speed is timed after all trainings, systems interleaved, median.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import srsly

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import ACC_KEYS, ROOT, System  # noqa: E402

DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data" / "ud-small"
TREEBANKS = {"nl_alpino": "nl", "fi_tdt": "fi", "ga_idt": "ga", "zh_gsd": "zh"}
# spaCy's own components as `spacy init config -p <factory> -o efficiency
# --lang <lang>` makes them (what a user gets), gold_preproc on.
SPACY_SYSTEMS = {"spacy_tagger": System(factory="tagger"), "spacy_morphologizer": System(factory="morphologizer")}
DEFAULT_LSTM = {
    "lstm_tagger": System(preset="small"),
    "lstm_joint_tagger": System(preset="joint"),
    # the factories' defaults with spaCy's standard training block (what
    # `spacy init config -p lstm_tagger` writes): what a user gets without choosing
    "lstm_tagger_defaults": System(factory="lstm_tagger"),
    "lstm_joint_tagger_defaults": System(factory="lstm_joint_tagger"),
    # the same without the auxiliary UPOS / FEATS heads: what they add
    "lstm_tagger_defaults_no_aux": System(factory="lstm_tagger", overrides={
        "components.lstm_tagger.model.joint_pos": False, "components.lstm_tagger.model.joint_morph": False}),
}
BASELINE = "spacy_tagger"
DEV_FRACTION = 0.1


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


def build_config(system: System, lang: str, data: Dict, policy: Dict, log_path: Path):
    """The config one system trains with: its own hyperparameters, this
    treebank's language and split, the shared early-stopping policy, gold
    tokens, and the timed logger (wall time to the best dev score)."""
    config = harness.run_config(system, lang=lang, train=data["train"]["path"], dev=data["dev"]["path"],
                                log_path=log_path, training=policy)
    tagger = config["components"].get("tagger", {})
    if tagger.get("factory") == "tagger" and negative_looking_tags(data, tagger.get("neg_prefix", "")):
        # A gold tag like ga_idt's "!" starts with the tagger's neg_prefix ("!"), so Thinc's loss reads it as
        # "not ''" and fails with KeyError: ''. An empty prefix turns negative labels off (spaCy's own setting).
        tagger["neg_prefix"] = ""
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


def parse_lstm(values: Optional[List[str]]) -> Dict[str, System]:
    """``--lstm NAME=PRESET`` or ``NAME=path/to/config.cfg`` (relative to here or the repository root)."""
    from spacy_lstm_tagger.presets import preset_names

    if not values:
        return dict(DEFAULT_LSTM)
    systems: Dict[str, System] = {}
    for value in values:
        name, sep, cfg = value.partition("=")
        if not sep or not name or not cfg:
            raise SystemExit(f"[multilingual] --lstm takes name=PRESET or name=path/to/config.cfg, got {value!r}")
        if name in SPACY_SYSTEMS or name in systems:
            raise SystemExit(f"[multilingual] --lstm name {name!r} is already taken")
        if cfg in preset_names():
            systems[name] = System(preset=cfg)
            continue
        path = Path(cfg) if Path(cfg).is_absolute() or Path(cfg).is_file() else ROOT / cfg
        if not path.is_file():
            raise SystemExit(f"[multilingual] --lstm {name}: {cfg} is neither a preset nor a config file (not found)")
        resolved = path.resolve()
        systems[name] = System(file=str(resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved))
    return systems


def notes(systems: Dict[str, System], splits: Dict[str, Dict], errors: Dict) -> List[str]:
    out = [
        "Train = *-ud-dev.conllu minus its last 10% of sentences; dev (early stopping, model-best) = that "
        "last 10%; every accuracy is on *-ud-test.conllu (eval), percent. The split is made on CoNLL-U "
        "sentences before spaCy's conllu converter groups them into docs (same n_sents for all systems).",
        "Gold tokens everywhere (gold_preproc = true in training; eval docs built from the gold words). "
        "zh uses spaCy's blank Chinese pipeline; its character segmenter is never used on gold tokens.",
        "spacy_tagger / spacy_morphologizer / lstm_tagger_defaults / lstm_joint_tagger_defaults: the config "
        "`spacy init config -p tagger|morphologizer|lstm_tagger|lstm_joint_tagger -o efficiency --lang <lang>` "
        "makes (generated at run time, saved in the work dir), gold_preproc on.",
        "Every system's own batcher/optimizer/dropout; the early-stopping policy in settings is the same for "
        "all. Accuracy keys a system does not predict are null (spaCy's tagger sets no pos/morph; "
        "lstm_tagger writes tags only: its UPOS / FEATS heads, on by default where the data has them, are "
        "auxiliary training targets; lstm_joint_tagger writes pos and morph).",
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


# --------------------------------------------------------------------- run
def collect(args: argparse.Namespace, work: Path, systems: Dict[str, System], splits: Dict[str, Dict],
            errors: Dict, timings: Optional[Dict] = None) -> Dict:
    """The results JSON from whatever is finished in the work dir."""
    machines = [srsly.read_json(p).get("machine") for tb in splits for s in systems
                for p in sorted((work / tb / s).glob("timing_*.json")) + [work / tb / s / "eval.json"] if p.exists()]
    result: Dict = {
        "machine": harness.machine_record(
            next((m for m in reversed(machines) if m), None), torch_threads=args.threads, batch_size=args.batch_size,
            timing=f"median of {args.rounds} rounds x {args.repeats} repeats of nlp.pipe over the eval docs (gold "
                   f"tokens; character caches emptied, then filled from {harness.CACHE_WARM_DOCS} train docs, before "
                   "each pass), systems interleaved per treebank, 1 child process per measurement",
            train_note=f"{args.threads} torch thread(s) per training, one training at a time; shared 2-core "
                       "machine: train_seconds are upper bounds"),
        "settings": {
            "data_dir": str(args.data_dir), "dev_fraction": DEV_FRACTION, "n_sents_per_doc": args.n_sents,
            "limit_sents": args.limit_sents, "gold_preproc": True, **training_policy(args),
            "policy_note": "spaCy's early stopping: stop when the dev score has not improved for `patience` "
                           "steps, evaluating every `eval_frequency` steps, at most `max_steps`; model-best "
                           "(best dev score) is evaluated. Same for every system.",
            "systems": {name: system.describe() for name, system in systems.items()},
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
            if not (sdir / harness.RECORD).exists() or not (sdir / "eval.json").exists():
                continue
            train = srsly.read_json(sdir / harness.RECORD)
            ev = srsly.read_json(sdir / "eval.json")
            timed = (timings or {}).get((tb, system))
            seconds = timed["seconds"] if timed else ev["seconds"]
            row = {k: harness.percent(ev["scores"].get(k)) for k in ACC_KEYS}
            row.update({
                "words_per_second": round(ev["n_words"] / statistics.median(seconds)),
                "timing": "interleaved" if timed else "preliminary (one pass after training, not interleaved)",
                **{k: train[k] for k in ("train_seconds", "train_total_seconds", "best_dev_score", "best_dev_scores",
                                         "best_step", "last_step", "train_peak_rss_mb")},
                "stopped_before_patience": "stopped_at_step" in train or train.get("stopped_before_patience", False),
                "inference_peak_rss_mb": timed["inference_peak_rss_mb"] if timed else None,
                "model_mb": round(harness.dir_size_mb(sdir / "model" / "model-best"), 2),
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


def measure_eval(sdir: Path, data: Dict, args: argparse.Namespace) -> Dict:
    """Score model-best on the eval file, with one preliminary timing pass (eval.json)."""
    return harness.measure_in_child(sdir / "eval.json", args.threads, sdir / "train.log",
                                    model_dir=sdir / "model" / "model-best", corpus=data["eval"]["path"], repeats=1,
                                    batch_size=args.batch_size, warm=data["train"]["path"], gold_words=True)


def select_systems(args: argparse.Namespace) -> Dict[str, System]:
    systems = {**SPACY_SYSTEMS, **parse_lstm(args.lstm)}
    unknown = [s for s in args.systems or [] if s not in systems]
    if unknown:
        raise SystemExit(f"[multilingual] unknown --systems {unknown}: choose from {list(systems)}")
    return {s: systems[s] for s in args.systems} if args.systems else systems


def run(args: argparse.Namespace) -> Dict:
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise SystemExit(f"[multilingual] data directory {data_dir} not found: pass --data-dir with the ud-small "
                         f"treebanks ({', '.join(TREEBANKS)})")
    work, output = Path(args.work_dir).resolve(), Path(args.output)
    systems = select_systems(args)
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
    for name, system in systems.items():
        for tb in treebanks:
            sdir = work / tb / name
            if args.collect_only:
                if (sdir / "error.txt").exists():
                    errors[(tb, name)] = (sdir / "error.txt").read_text(encoding="utf8")
                continue
            config = build_config(system, TREEBANKS[tb], splits[tb], policy, sdir / "train_log.jsonl")
            try:
                trained = harness.train_system(
                    sdir, config, {"system": name, "config": system.describe()}, threads=args.threads,
                    say=lambda text, name=name, tb=tb: say(f"{tb} {name}: {text}"), force=args.force,
                    reuse_changed=args.reuse_trainings, log_path=sdir / "train.log")
                if not trained and (sdir / "eval.json").exists():
                    continue
                scores = measure_eval(sdir, splits[tb], args)["scores"]
            except RuntimeError as err:
                errors[(tb, name)] = str(err)
                (sdir / "error.txt").write_text(errors[(tb, name)], encoding="utf8")
                say(f"{tb} {name}: FAILED {errors[(tb, name)]}")
                continue
            train = srsly.read_json(sdir / harness.RECORD)
            say(f"{tb} {name}: done, best dev {train['best_dev_score']} at step {train['best_step']} "
                f"({train['train_seconds']:.1f} s), eval " + ", ".join(
                    f"{k} {100 * v:.2f}" for k, v in scores.items() if v is not None))
            harness.write_results(collect(args, work, systems, splits, errors), output)
    # 2. time every system, interleaved within each treebank
    timings: Dict[Tuple[str, str], Dict] = {}
    for round_ in range(args.rounds):
        for tb in treebanks:
            for name in systems:
                sdir = work / tb / name
                path = sdir / f"timing_{round_}.json"
                skip = (tb, name) in errors or not (sdir / "eval.json").exists()
                if skip or (args.collect_only and not path.exists()):
                    continue
                timed = srsly.read_json(path) if args.collect_only else harness.measure_in_child(
                    path, args.threads, model_dir=sdir / "model" / "model-best", corpus=splits[tb]["eval"]["path"],
                    repeats=args.repeats, batch_size=args.batch_size, warm=splits[tb]["train"]["path"],
                    gold_words=True, score=False)
                row = timings.setdefault((tb, name), {"seconds": [], "inference_peak_rss_mb": 0.0})
                row["seconds"].extend(timed["seconds"])
                row["inference_peak_rss_mb"] = max(row["inference_peak_rss_mb"], timed["inference_peak_rss_mb"])
        if not args.collect_only:
            say(f"timing round {round_ + 1}/{args.rounds} done")
    if args.collect_only and not any((work / tb / name / "eval.json").exists()
                                     for tb in treebanks for name in systems):
        raise SystemExit(f"multilingual: --collect-only found no finished system under {work}: "
                         "run without it first")
    result = collect(args, work, systems, splits, errors, timings)
    harness.write_results(result, output, plot)
    print_table(result)
    say(f"wrote {output} and {output.with_suffix('.png')}")
    return result


# ------------------------------------------------------------ table, plot
def print_table(result: Dict) -> None:
    from wasabi import msg

    header = ["treebank", "system", "tag_acc", "pos_acc", "morph_acc", "margin", "words/s", "x spacy",
              "train s", "best dev", "step"]
    keys = ["tag_acc", "pos_acc", "morph_acc", "margin", "words_per_second", "speed_ratio_vs_spacy_tagger",
            "train_seconds", "best_dev_score", "best_step"]
    rows = [[tb, name, *(["error"] + [""] * 8 if "error" in r else [r.get(k) for k in keys])]
            for tb, systems in result["treebanks"].items() for name, r in systems.items()]
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
    p_finish = sub.add_parser("finish-one", help="record and score a training stopped before its patience ran out")
    p_finish.add_argument("out_dir", type=Path, help="a treebank's system folder of --work-dir")
    for p in (parser, p_finish):
        harness.add_run_options(p, threads=1, work_dir="work_multilingual", output="multilingual.json")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                        help="folder with nl_alpino/, fi_tdt/, ga_idt/, zh_gsd/ (default: ../shared/data/ud-small)")
    parser.add_argument("--treebanks", nargs="*", help=f"default: {' '.join(TREEBANKS)}")
    parser.add_argument("--lstm", action="append", metavar="NAME=PRESET|CONFIG",
                        help=f"an lstm_tagger system (repeatable); default: {', '.join(DEFAULT_LSTM)}")
    parser.add_argument("--systems", nargs="*", help="only these systems (default: spaCy's two + every --lstm)")
    parser.add_argument("--n-sents", type=int, default=10, help="sentences per doc (spacy convert -n)")
    parser.add_argument("--limit-sents", type=int, default=0, help="use only the first N sentences of each file (tests)")
    parser.add_argument("--max-steps", type=int, default=10000)
    parser.add_argument("--patience", type=int, default=1000)
    parser.add_argument("--eval-frequency", type=int, default=100)
    parser.add_argument("--force", action="store_true", help="retrain finished systems")
    parser.add_argument("--reuse-trainings", action="store_true",
                        help="reuse finished trainings even where the config text changed since (the changed "
                             "lines are logged): e.g. inference-only settings added with their default values")
    parser.add_argument("--collect-only", action="store_true",
                        help="train and time nothing: rebuild the JSON, PNG and table from the work dir "
                             "(its timing_<round>.json files, rounds < --rounds)")
    args = parser.parse_args(argv)
    if args.command == "finish-one":
        harness.finish_one(args.out_dir, args.threads)
        data = srsly.read_json(args.out_dir.parent / "data" / "split.json")
        measure_eval(args.out_dir, data, args)
    elif args.replot:
        plot(srsly.read_json(args.output), Path(args.output).with_suffix(".png"))
    else:
        run(args)


if __name__ == "__main__":
    main()
