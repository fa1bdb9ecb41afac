"""Side-by-side benchmark: spaCy's built-in tagger vs lstm_tagger on UD English EWT.

One command trains every system on the same train corpus on this machine,
scores each on dev, measures CPU inference speed (median of repeated,
interleaved runs, so machine noise hits every system alike) and writes
``benchmarks/results/ewt.json`` plus a PNG. Resumable: each system's
training is saved as soon as it finishes and is reused on a re-run
(``--retrain`` trains again). Trainings and measurements run in child
processes (``harness.py``), so peak RSS is measured per system.

    python benchmarks/ewt_benchmark.py --train corpus/en_ewt-ud-train.spacy \\
        --dev corpus/en_ewt-ud-dev.spacy

``train-one SYSTEM`` trains one system here (``--set`` overrides, ``--config``
another config under its name); ``finish-one SYSTEM`` records a training
stopped before its step budget from its log.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import srsly

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import ROOT, System  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
from link_corpora import link_corpora  # noqa: E402

MAIN_SYSTEMS = {
    "spacy_tagger": System(file="configs/spacy_tagger.cfg"),
    # what `spacy init config -p lstm_tagger` gives a user who picks nothing
    "lstm_tagger_defaults": System(factory="lstm_tagger"),
    "lstm_tagger_efficiency": System(preset="efficiency"),
    "lstm_tagger_accuracy": System(preset="accuracy"),
    "lstm_tagger_small": System(preset="small"),
}
# resources: [paths] key -> a resource of scripts/prepare_pretrained.py
# ("floret": vectors learned from the train corpus itself, train_vectors.py);
# the transformer needs spacy-transformers (pip install spacy-transformers==1.4.0)
OTHER_SYSTEMS = {
    # the optional features and the pretrained inputs, each against the same
    # settings without the feature (ewt_features.json, ewt_pretrained_inputs.json)
    "lstm_tagger_features_baseline": System(preset="features_baseline"),
    "lstm_tagger_efficiency_crf": System(preset="efficiency_crf"),
    "lstm_tagger_efficiency_joint_pos": System(preset="efficiency_joint_pos"),
    "lstm_tagger_efficiency_vectors": System(preset="efficiency_vectors", resources={"vectors": "floret"}),
    # pretrained knowledge (ewt_pretrained_inputs.json)
    "lstm_tagger_vectors": System(preset="efficiency_md_vectors", resources={"vectors": "md"}),
    "lstm_tagger_accuracy_vectors": System(preset="accuracy_md_vectors", resources={"vectors": "md"}),
    "lstm_tagger_glove": System(preset="efficiency_glove", resources={"vectors": "glove"}),
    "lstm_tagger_clusters": System(preset="efficiency_clusters", resources={"clusters": "clusters"}),
    "lstm_tagger_transformer": System(preset="efficiency_transformer", resources={"transformer_model": "minilm"}),
    # students trained on the soft tags of finished teachers (several: their mean)
    "lstm_tagger_distilled": System(preset="distilled", teachers=("lstm_tagger_accuracy", "lstm_tagger_efficiency")),
    "lstm_tagger_distilled_fast": System(
        preset="distilled_fast", teachers=("lstm_tagger_efficiency", "lstm_tagger_accuracy")),
    "lstm_tagger_distilled_vectors": System(
        preset="distilled_md_vectors", resources={"vectors": "md"}, teachers=("lstm_tagger_transformer",)),
    # a fine-tuned transformer teacher (encoder weights updated) and students
    # trained on its stored outputs over EWT train + unlabeled Gutenberg prose
    "lstm_tagger_finetuned": System(file="configs/lstm_tagger_finetuned.cfg", resources={"transformer_model": "minilm"}),
    "lstm_tagger_student": System(
        file="configs/lstm_tagger_student.cfg", stored_teacher="lstm_tagger_finetuned", unlabeled=("gutenberg",)),
    "lstm_tagger_student_fast": System(
        preset="student_fast", stored_teacher="lstm_tagger_finetuned", unlabeled=("gutenberg",)),
    "lstm_tagger_student_vectors": System(
        preset="student_md_vectors", resources={"vectors": "md"}, stored_teacher="lstm_tagger_finetuned",
        unlabeled=("gutenberg",)),
    # another seed: a member of an ensemble
    "lstm_tagger_efficiency_seed1": System(preset="efficiency", overrides={"system.seed": 1}),
}
SYSTEMS = {**MAIN_SYSTEMS, **OTHER_SYSTEMS}
RESOURCE_FILES = {"md": "en_core_web_md_vectors", "glove": "glove_6b_50d", "clusters": "en_lexeme_cluster.json.gz",
                  "minilm": "all-MiniLM-L6-v2", "minilm-pipeline": "all-MiniLM-L6-v2-spacy",
                  "gutenberg": "gutenberg.spacy"}
# a student's corpus repeats EWT train until it is about half of the tokens
# next to the unlabeled text (scripts/link_corpora.py --gold-share)
GOLD_SHARE = 0.5
# Ensembles (spacy_lstm_tagger/ensemble.py: mean probabilities) of trained
# members; their training time is the longest member's (members train side by side).
ENSEMBLES = {
    "lstm_tagger_ensemble": ["lstm_tagger_efficiency", "lstm_tagger_efficiency_seed1"],
    "lstm_tagger_ensemble_eff_acc": ["lstm_tagger_efficiency", "lstm_tagger_accuracy"],
}


def every_member(system: str, settings: Dict[str, Any]) -> Dict:
    """Load-time overrides setting ``settings`` on each member of an ensemble system."""
    members = {f"member{i}": dict(settings) for i in range(len(ENSEMBLES[system]))}
    return {"components": {"lstm_tagger": {"model": {"*": members}}}}


def model_settings(**settings: Any) -> Dict:
    return {"components": {"lstm_tagger": {"model": settings}}}


# Inference-only variants: a trained system loaded with config overrides.
VARIANTS = {
    "lstm_tagger_features_baseline_probs": (
        "lstm_tagger_features_baseline", {"components": {"lstm_tagger": {"store_probabilities": True}}}),
    # int8 dynamic quantization (model setting quantize): its speed and accuracy cost
    "lstm_tagger_efficiency_int8": ("lstm_tagger_efficiency", model_settings(quantize=True)),
    "lstm_tagger_accuracy_int8": ("lstm_tagger_accuracy", model_settings(quantize=True)),
    # float32 everywhere (bfloat16 = false): the shipped bfloat16 = "auto" is
    # bf16 where it is native (machine.native_bf16), float32 elsewhere
    "lstm_tagger_efficiency_fp32": ("lstm_tagger_efficiency", model_settings(bfloat16=False)),
    "lstm_tagger_ensemble_fp32": ("lstm_tagger_ensemble", every_member("lstm_tagger_ensemble", {"bfloat16": False})),
    # bfloat16 inference forced (bfloat16 = true, emulated and slow where not native)
    **{f"{name}_bf16": (name, model_settings(bfloat16=True)) for name in (
        "lstm_tagger_efficiency", "lstm_tagger_accuracy", "lstm_tagger_distilled", "lstm_tagger_distilled_fast")},
    **{f"{name}_bf16": (name, every_member(name, {"bfloat16": True})) for name in ENSEMBLES},
    # spaCy's tagger with Thinc's NumpyOps(use_blis=False): numpy's BLAS instead
    # of blis, which runs unoptimized 'generic' kernels where it does not know
    # the CPU (machine.blis_config); the baseline of speed_ratio_vs_fastest_spacy
    "spacy_tagger_numpy_blas": ("spacy_tagger", {}),
}
NUMPY_BLAS_VARIANTS = {"spacy_tagger_numpy_blas"}
BASELINE = "spacy_tagger"
SPACY_BASELINES = ("spacy_tagger", "spacy_tagger_numpy_blas")
# what benchmarks/results/ewt.json holds
DEFAULT_SYSTEMS = [
    "spacy_tagger", "spacy_tagger_numpy_blas", "lstm_tagger_defaults",
    "lstm_tagger_efficiency", "lstm_tagger_efficiency_fp32", "lstm_tagger_efficiency_int8",
    "lstm_tagger_accuracy", "lstm_tagger_accuracy_bf16", "lstm_tagger_accuracy_int8",
    "lstm_tagger_ensemble", "lstm_tagger_ensemble_fp32", "lstm_tagger_ensemble_eff_acc_bf16",
    "lstm_tagger_distilled_fast", "lstm_tagger_distilled_fast_bf16",
]


def prepare_resource(resource: str, train: str, work: Path, pretrained_dir: Path) -> Path:
    """The file or pipeline of a pretrained resource, prepared on first use."""
    if resource == "floret":
        path = work / "floret_vectors"
        if not (path / "config.cfg").exists():
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_vectors.py"), train, str(path)],
                           check=True)
        return path
    path = pretrained_dir / RESOURCE_FILES[resource]
    if not path.exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "prepare_pretrained.py"), str(pretrained_dir), resource],
                       check=True)
    return path


def system_config(name: str, args: argparse.Namespace, system: Optional[System] = None):
    """What ``name`` trains with here: its config, the EWT files, its resources and teachers."""
    system = system or SYSTEMS[name]
    work = Path(args.work_dir)
    paths: Dict[str, Any] = {key: str(prepare_resource(resource, args.train, work, Path(args.pretrained_dir)))
                             for key, resource in system.resources.items()}
    if system.teachers:
        teachers = [str(work / t / "model" / "model-best") for t in system.teachers]
        paths["teacher"] = teachers[0] if len(teachers) == 1 else teachers
    if system.stored_teacher:
        unlabeled = [prepare_resource(r, args.train, work, Path(args.pretrained_dir)) for r in system.unlabeled]
        paths.update(stored_teacher_paths(system.stored_teacher, Path(args.train), unlabeled, work, args))
    return harness.run_config(system, train=args.train, dev=args.dev, log_path=work / name / "train_log.jsonl",
                              paths=paths, training={"max_steps": args.max_steps} if args.max_steps else {})


def stored_teacher_paths(teacher: str, train: Path, unlabeled: List[Path], work: Path,
                         args: argparse.Namespace) -> Dict[str, str]:
    """``paths`` of a student of ``teacher``'s stored outputs: the training
    corpus (a directory linking the train file and the unlabeled text), the
    outputs over it (made on first use, in ``--teacher-processes``
    processes; their time is saved next to them) and the teacher."""
    model = work / teacher / "model" / "model-best"
    corpus = work / teacher / "distillation_corpus"
    link_corpora(corpus, [train, *unlabeled], gold_share=GOLD_SHARE)
    outputs = work / teacher / "teacher_outputs"
    timing = outputs / "seconds.json"
    if not timing.exists():
        print(f"[benchmark] {teacher}: storing its outputs over {', '.join(p.name for p in corpus.iterdir())}",
              flush=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "spacy_lstm_tagger", "teacher-outputs", str(model), str(outputs),
                        str(corpus), "--processes", str(args.teacher_processes)], check=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
        srsly.write_json(timing, {"seconds": round(time.perf_counter() - start, 1),
                                  "processes": args.teacher_processes})
    return {"train": str(corpus), "teacher_outputs": str(outputs), "teacher": str(model)}


def meta(name: str, system: System) -> Dict[str, Any]:
    return {"system": name, "config": system.describe(),
            **({"teachers": list(system.teachers)} if system.teachers else {}),
            **({"stored_teacher": system.stored_teacher, "unlabeled": list(system.unlabeled)}
               if system.stored_teacher else {}),
            **({"overrides": dict(system.overrides)} if system.overrides else {})}


def assemble_one(system: str, work: Path) -> None:
    """Assemble an ensemble system from its trained members (ENSEMBLES) into
    ``work/system/model/model-best``, with a record of the members' training
    times (the longest is the ensemble's: they train side by side)."""
    from spacy_lstm_tagger.ensemble import assemble

    members = ENSEMBLES[system]
    out_dir = work / system
    (out_dir / "model").mkdir(parents=True, exist_ok=True)
    assemble([work / m / "model" / "model-best" for m in members]).to_disk(out_dir / "model" / "model-best")
    results = [srsly.read_json(work / m / harness.RECORD) for m in members]
    srsly.write_json(out_dir / harness.RECORD, {
        "system": system, "config": " + ".join(r["config"] for r in results), "members": members,
        "train_seconds": max(r["train_seconds"] for r in results),
        "train_total_seconds": max(r["train_total_seconds"] for r in results),
        "members_train_seconds": {m: r["train_seconds"] for m, r in zip(members, results)},
        "best_step": None, "best_epoch": None,
        "train_peak_rss_mb": max((r["train_peak_rss_mb"] or 0) for r in results) or None,
        "torch_threads": results[0]["torch_threads"], "max_steps": max(r["max_steps"] for r in results),
        "curve": [],
    })


def training_order(systems: List[str]) -> List[str]:
    """The trained systems behind ``systems``: a variant's source, teachers
    before their students, members before their ensemble."""
    trained = list(dict.fromkeys(VARIANTS.get(s, (s,))[0] for s in systems))
    before = [t for s in trained for t in (SYSTEMS[s].teachers if s in SYSTEMS else ()) + tuple(ENSEMBLES.get(s, ()))
              + ((SYSTEMS[s].stored_teacher,) if s in SYSTEMS and SYSTEMS[s].stored_teacher else ())]
    return list(dict.fromkeys(before + trained))


def row(system: str, record: Dict, measured: Dict, seconds: List[float], work: Path) -> Dict:
    source = VARIANTS.get(system, (system,))[0]
    scores = measured["scores"]
    teachers = [Path(t).parent.parent.name if Path(t).name == "model-best" else t for t in record.get("teachers", [])]
    return {
        "config": record["config"], "tag_acc": harness.percent(scores["tag_acc"]),
        "pos_acc": harness.percent(scores["pos_acc"]), "doc_tag_acc": harness.percent(scores["doc_tag_acc"]),
        "words_per_second": round(measured["n_words"] / statistics.median(seconds)),
        **{key: record[key] for key in ("train_seconds", "train_total_seconds", "best_step", "max_steps")},
        "peak_rss_mb": record["train_peak_rss_mb"],
        **({"stopped_at_step": record["stopped_at_step"]} if "stopped_at_step" in record else {}),
        **({"teachers": teachers} if teachers else {}),
        **stored_teacher_row(record, work),
        **({"members": record["members"]} if "members" in record else {}),
        "inference_peak_rss_mb": measured["inference_peak_rss_mb"],
        "model_mb": round(harness.dir_size_mb(work / source / "model" / "model-best"), 2),
        "curve": record["curve"],
    }


def stored_teacher_row(record: Dict, work: Path) -> Dict:
    """A student's teacher, unlabeled text and the time its outputs took."""
    if not record.get("stored_teacher"):
        return {}
    outputs = work / record["stored_teacher"] / "teacher_outputs"
    meta = srsly.read_json(outputs / "meta.json")
    return {"stored_teacher": record["stored_teacher"], "unlabeled": record["unlabeled"],
            "teacher_outputs": {"sentences": meta["n_sentences"], "tokens": meta["n_tokens"], "top_k": meta["top_k"],
                                **srsly.read_json(outputs / "seconds.json")}}


def run(args: argparse.Namespace) -> Dict:
    work, output = Path(args.work_dir), Path(args.output)
    systems = args.systems or DEFAULT_SYSTEMS
    # 1. train what is not finished
    for name in training_order(systems):
        say = lambda text, name=name: print(f"[benchmark] {name}: {text}", flush=True)  # noqa: E731
        if name in ENSEMBLES:
            if args.retrain or not (work / name / harness.RECORD).exists():
                say(f"assembling {' + '.join(ENSEMBLES[name])}")
                assemble_one(name, work)
            continue
        harness.train_system(work / name, system_config(name, args), meta(name, SYSTEMS[name]),
                             threads=args.threads, say=say, force=args.retrain, reuse_changed=True)
    # 2. score and time every system, interleaving the repeats across systems
    timings: Dict[str, List[float]] = {s: [] for s in systems}
    measured: Dict[str, Dict] = {}
    for round_ in range(args.rounds):
        for system in systems:
            source, overrides = VARIANTS.get(system, (system, {}))
            measured[system] = harness.measure_in_child(
                work / system / f"measure_{round_}.json", args.threads,
                model_dir=work / source / "model" / "model-best", corpus=args.dev, repeats=args.repeats, batch_size=args.batch_size, overrides=overrides,
                use_blis=system not in NUMPY_BLAS_VARIANTS, warm=args.train)
            timings[system].extend(measured[system]["seconds"])
    result = {
        "dataset": "UD_English-EWT 2.16", "split": "dev",
        "machine": harness.machine_record(
            measured[systems[-1]]["machine"], torch_threads=args.threads, batch_size=args.batch_size,
            timing=f"median of {args.rounds} rounds x {args.repeats} repeats, systems interleaved",
            train_note=f"{args.threads} torch thread(s) per training"),
        "systems": {s: row(s, srsly.read_json(work / VARIANTS.get(s, (s,))[0] / harness.RECORD), measured[s],
                           timings[s], work) for s in systems},
    }
    rows = result["systems"]
    spacy_speeds = [rows[s]["words_per_second"] for s in SPACY_BASELINES if s in rows]
    for key, base in (("speed_ratio_vs_spacy_tagger", rows.get(BASELINE, {}).get("words_per_second")),
                      ("speed_ratio_vs_fastest_spacy", max(spacy_speeds) if len(spacy_speeds) > 1 else None)):
        for r in rows.values():
            if base:
                r[key] = round(r["words_per_second"] / base, 2)
    harness.write_results(result, output, plot)
    print_table(result)
    return result


def print_table(result: Dict) -> None:
    from wasabi import msg

    keys = ["tag_acc", "pos_acc", "doc_tag_acc", "words_per_second", "speed_ratio_vs_spacy_tagger",
            "speed_ratio_vs_fastest_spacy", "train_seconds", "peak_rss_mb", "model_mb"]
    header = ["system", "tag_acc", "pos_acc", "doc tag_acc", "words/s", "x spacy", "x fastest spacy",
              "train s (best)", "peak RSS MB", "model MB"]
    msg.table([[name, *(r.get(k) for k in keys)] for name, r in result["systems"].items()], header=header, divider=True)


def plot(result: Dict, png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    for name, r in result["systems"].items():
        if name in VARIANTS:  # same training as its source system
            continue
        curve = [(c["seconds"] / 60, 100 * c["tag_acc"]) for c in r["curve"] if c["tag_acc"] is not None]
        if not curve:  # an ensemble: its score when its last member is trained
            ax1.scatter([r["train_seconds"] / 60], [r["tag_acc"]], marker="*", s=120, zorder=3,
                        label=f"{name} ({r['tag_acc']}; members side by side)")
            continue
        ax1.plot([c[0] for c in curve], [c[1] for c in curve], label=f"{name} ({r['tag_acc']})")
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
    plt.close(fig)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    p_one = sub.add_parser("train-one", help="train one system in this process")
    p_one.add_argument("system", choices=list(SYSTEMS))
    p_one.add_argument("--config", default=None, help="train this config file instead of the system's own")
    p_one.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="another config override, e.g. system.seed=2")
    p_finish = sub.add_parser("finish-one", help="record a training stopped before its budget")
    p_finish.add_argument("system", choices=list(SYSTEMS))
    for p in (parser, p_one, p_finish):
        p.add_argument("--train", default=str(ROOT / "corpus" / "en_ewt-ud-train.spacy"))
        p.add_argument("--dev", default=str(ROOT / "corpus" / "en_ewt-ud-dev.spacy"))
        p.add_argument("--pretrained-dir", default=str(ROOT / "assets" / "pretrained"),
                       help="where scripts/prepare_pretrained.py writes the pretrained resources")
        p.add_argument("--max-steps", type=int, default=0, help="override every config's max_steps (0: keep)")
        p.add_argument("--teacher-processes", type=int, default=1,
                       help="processes storing a teacher's outputs for its students (1 torch thread each)")
        harness.add_run_options(p, threads=1, work_dir="work", output="ewt.json")
    parser.add_argument("--systems", nargs="*", choices=list(SYSTEMS) + list(ENSEMBLES) + list(VARIANTS),
                        help=f"default: {' '.join(DEFAULT_SYSTEMS)}")
    parser.add_argument("--retrain", action="store_true", help="ignore finished trainings")
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "train-one":
        own = SYSTEMS[args.system]
        file = str(Path(args.config).resolve()) if args.config else own.file
        system = System(preset=None if file else own.preset, file=file, factory=None if file else own.factory,
                        overrides={**own.overrides, **parse_overrides(args.set)}, resources=own.resources,
                        teachers=own.teachers, stored_teacher=own.stored_teacher, unlabeled=own.unlabeled)
        out_dir = Path(args.work_dir) / args.system
        out_dir.mkdir(parents=True, exist_ok=True)
        system_config(args.system, args, system).to_disk(out_dir / "config.cfg")
        srsly.write_json(out_dir / "system.json", meta(args.system, system))
        harness.train_one(out_dir, args.threads)
    elif args.command == "finish-one":
        record = harness.finish_one(Path(args.work_dir) / args.system, args.threads)
        print(f"[benchmark] {args.system}: recorded as stopped at step {record['stopped_at_step']} "
              f"of {record['max_steps']}")
    elif args.replot:
        plot(srsly.read_json(args.output), Path(args.output).with_suffix(".png"))
    else:
        run(args)


if __name__ == "__main__":
    main()
