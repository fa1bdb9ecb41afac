"""Command line: ``python -m spacy_lstm_tagger COMMAND`` (or ``spacy-lstm-tagger COMMAND``).

    tag        tag a corpus (txt / jsonl / CoNLL-U) to stdout (JSONL / CoNLL-U)
               or into .spacy, JSONL and/or CoNLL-U partitions of a
               directory, on one process, N processes or a Dask cluster
    confusion  per-tag scores and confusion matrix of a tagger on gold data
    init-config  write a tuned training config (--preset efficiency, accuracy, ...)
    ensemble   combine trained taggers into one pipeline (mean probabilities)
    convert    CoNLL-U -> .spacy training data (a file, or a UD treebank
               directory), an XPOS '_' kept as a missing tag
    teacher-outputs  store a trained tagger's top-k tag distributions over
               corpora, for students that train without running it

Errors (bad input, a missing model, a directory that is not a pipeline, a
pipeline without a tagger, a missing optional dependency) are one message
and exit code 1, not a traceback.
"""
import contextlib
import os
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from .presets import DEFAULT_PRESET

app = typer.Typer(name="spacy-lstm-tagger", add_completion=False, no_args_is_help=True,
                  help="spacy-lstm-tagger: tag corpora at scale, evaluate taggers.")


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import version as dist_version

        from . import __version__

        spacy_version = dist_version("spacy")
        typer.echo(f"spacy-lstm-tagger {__version__} (spaCy {spacy_version})")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit"),
) -> None:
    """spacy-lstm-tagger: tag corpora at scale, evaluate taggers."""


class OutputFormat(str, Enum):
    spacy = "spacy"
    jsonl = "jsonl"
    conllu = "conllu"
    both = "both"


class InputFormat(str, Enum):
    auto = "auto"
    txt = "txt"
    jsonl = "jsonl"
    conllu = "conllu"


class Engine(str, Enum):
    local = "local"
    dask = "dask"


class ConlluUnit(str, Enum):
    sentence = "sentence"
    newdoc = "newdoc"


class Sentences(str, Enum):
    sentencizer = "sentencizer"
    line = "line"


@app.command("tag")
def tag_command(
    model: str = typer.Argument(..., help="Pipeline directory or installed package (with an lstm_tagger or any tagger)"),
    inputs: List[Path] = typer.Argument(..., help="Input files (.txt one doc per line, .jsonl {\"text\": ...}, .conllu) or directories of them"),
    output: str = typer.Option("-", "--output", "-o", help="Output directory (part-NNNNN.spacy / .jsonl / .conllu, manifest.json; resumable), or - (the default) to stream JSONL or CoNLL-U to stdout"),
    output_format: Optional[List[OutputFormat]] = typer.Option(None, "--format", "-f", help="DocBin (spacy), JSONL (tokens, offsets, tags), CoNLL-U (conllu) or both (spacy and jsonl); repeat for several. Default: spacy into --output DIR, jsonl to stdout"),
    input_format: InputFormat = typer.Option(InputFormat.auto, "--input-format", "-i", help="Input format (auto: from the file extension)"),
    conllu_unit: ConlluUnit = typer.Option(ConlluUnit.sentence, "--conllu-docs", help="CoNLL-U: one Doc per sentence or per '# newdoc'"),
    n_process: int = typer.Option(1, "--n-process", "-n", help="Local engine: worker processes (one partition at a time each, one torch thread each when > 1; with -o -, nlp.pipe's n_process)"),
    batch_size: int = typer.Option(256, "--batch-size", "-b", help="Docs per nlp.pipe batch"),
    engine: Engine = typer.Option(Engine.local, "--engine", "-e", help="local (this process / --n-process) or dask"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler address (e.g. tcp://host:8786); implies --engine dask. Default: a LocalCluster"),
    n_workers: Optional[int] = typer.Option(None, "--n-workers", help="LocalCluster worker processes, one thread each (default: one per CPU)"),
    partition_size: int = typer.Option(5000, "--partition-size", help="Docs per partition (one output file each; the unit of resuming)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="Torch intra-op threads per process (default: 1, lstm_tagger's own default unless OMP_NUM_THREADS is set; more pays only on a machine with idle cores)"),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bar on stderr, per batch, with docs/s and ETA (default: when stderr is a terminal)"),
    probabilities: bool = typer.Option(False, "--probabilities", help="Every lstm_tagger stores tag_prob / tag_alternatives (written to the JSONL and the DocBin's user data)"),
    sentences: Sentences = typer.Option(Sentences.sentencizer, "--sentences", help="What a text line (or JSONL record) becomes: one Doc either way; sentencizer = its sentences split by spaCy's sentencizer (added after the tagger when no component of the pipeline sets sentence boundaries; tags unchanged), one CoNLL-U sentence each; line = one sentence, whatever it holds. CoNLL-U input keeps its sentences"),
) -> None:
    """Tag a corpus to stdout, or into partitioned output files (re-running
    the same command resumes).

    Input: .txt (one doc per line), .jsonl ({"text": ...}), .conllu (gold
    tokenization, one doc per sentence). A text line is one Doc, split into
    sentences by spaCy's sentencizer (--sentences line: one sentence).
    Without --output (or with -o -), JSONL (or --format conllu) goes to
    stdout in input order, messages to stderr. With --output DIR:
    DIR/part-NNNNN.spacy, .jsonl and/or .conllu, one per partition of
    --partition-size docs, each written atomically; partitions already
    written are skipped.
    """
    formats = [f.value for f in output_format or [OutputFormat.jsonl if output == "-" else OutputFormat.spacy]]
    if output == "-":
        _stream(model, inputs, formats, input_format, conllu_unit, batch_size, n_process, engine,
                scheduler, threads, progress, probabilities, sentences.value)
        return
    from .tagging import InputError, OutputMismatchError, TaggingError, tag_corpus

    if scheduler:
        engine = Engine.dask
    try:
        stats = tag_corpus(
            model, inputs, Path(output), formats=formats, input_format=input_format.value,
            conllu_unit=conllu_unit.value, batch_size=batch_size, partition_size=partition_size,
            engine=engine.value, n_process=n_process, scheduler=scheduler, n_workers=n_workers,
            threads=threads, progress=progress, probabilities=probabilities, sentences=sentences.value,
        )
    except (InputError, OutputMismatchError, TaggingError, FileNotFoundError, ValueError, OSError) as err:
        msg.fail(str(err), exits=1)
    except ImportError as err:
        msg.fail(f"{err}: the Dask engine needs `pip install \"spacy-lstm-tagger[scale]\"`", exits=1)
    if stats.n_skipped:
        msg.info(f"Skipped {stats.n_skipped} of {stats.n_partitions} partitions (already written)")
    if stats.n_redone:
        msg.warn(f"Redid {stats.n_redone} partitions whose files were not the ones this run wrote: "
                 + "; ".join(stats.redone[:3]) + ("; ..." if stats.n_redone > 3 else ""))
    if stats.n_submitted:
        msg.good(
            f"Tagged {stats.n_docs} docs ({stats.n_words} words) in {stats.n_submitted} partitions with "
            f"{stats.engine} in {stats.seconds:.1f}s ({stats.setup_seconds:.1f}s setup): "
            f"{stats.docs_per_s:.1f} docs/s, {stats.words_per_s:.1f} words/s"
        )
    else:
        msg.good(f"Nothing to do: all {stats.n_partitions} partitions of {output} are written")
    msg.text(f"Output: {output}")


def _stream(model: str, inputs: List[Path], formats: List[str], input_format: InputFormat,
            conllu_unit: ConlluUnit, batch_size: int, n_process: int, engine: Engine,
            scheduler: Optional[str], threads: Optional[int], progress: Optional[bool],
            probabilities: bool, sentences: str) -> None:
    """``tag`` without ``--output`` (or ``-o -``): the tagged corpus on
    stdout; every message on stderr."""
    from .tagging import InputError
    from .tagging.stream import stream_corpus

    with contextlib.redirect_stdout(sys.stderr):
        if len(formats) != 1 or formats[0] not in ("jsonl", "conllu"):
            msg.fail(f"Without --output DIR the tagged corpus goes to stdout, in one text format: --format jsonl "
                     f"or --format conllu (got {', '.join(formats)}); use --output DIR for .spacy files", exits=1)
        if engine != Engine.local or scheduler:
            msg.fail("Tagging to stdout runs on the local engine (--n-process N); use --output DIR with Dask",
                     exits=1)
    out = getattr(sys.stdout, "buffer", None)
    if out is None:
        msg.fail("stdout is not a byte stream", exits=1)
    try:
        stats = stream_corpus(
            model, inputs, out, fmt=formats[0], input_format=input_format.value, conllu_unit=conllu_unit.value,
            batch_size=batch_size, n_process=n_process, threads=threads, progress=progress,
            probabilities=probabilities, sentences=sentences,
        )
    except BrokenPipeError:  # e.g. `... -o - | head`: the reader has all it wants
        # (stdout to /dev/null, so the interpreter's final flush doesn't complain)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0)
    except (InputError, FileNotFoundError, ValueError, OSError) as err:
        with contextlib.redirect_stdout(sys.stderr):
            msg.fail(str(err), exits=1)
    with contextlib.redirect_stdout(sys.stderr):
        msg.good(f"Tagged {stats.n_docs} docs ({stats.n_words} words) in {stats.seconds:.1f}s "
                 f"({stats.setup_seconds:.1f}s setup): {stats.docs_per_s:.1f} docs/s")


@app.command("confusion")
def confusion_command(
    model: str = typer.Argument(..., help="Pipeline directory or package"),
    data: Path = typer.Argument(..., help="Gold data: .spacy or .conllu"),
    output: Path = typer.Option(..., "--output", "-o", help="Directory for confusion.json and confusion.png"),
    top_n: int = typer.Option(15, "--top-n", help="Confusions listed / tags in the matrix"),
    batch_size: int = typer.Option(256, "--batch-size", "-b"),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Also draw confusion.png (needs matplotlib: the [plot] extra)"),
) -> None:
    """Per-tag precision/recall/F1 and the most frequent confusions, tagging
    the gold tokens one sentence at a time: its tag_acc is the number of
    `spacy evaluate MODEL DATA --gold-preproc` (and of the project's evaluate
    step), the one comparable with the benchmarks."""
    from .confusion import print_report, run_confusion

    try:
        report = run_confusion(model, data, output, top_n=top_n, batch_size=batch_size, plot=plot)
    except (FileNotFoundError, ValueError, ImportError, OSError) as err:
        msg.fail(str(err), exits=1)
    print_report(report)
    written = [output / "confusion.json"] + ([output / "confusion.png"] if plot else [])
    msg.good(f"Wrote {' and '.join(map(str, written))}")


@app.command("init-config", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def init_config_command(
    ctx: typer.Context,
    output: str = typer.Argument(..., help="Config file to write, or - for stdout"),
    preset: str = typer.Option(DEFAULT_PRESET, "--preset", "-p", help="The recipe: small (the default, any language and corpus size up to tens of thousands of words), efficiency (large corpora, fast), accuracy, joint (also UPOS and FEATS), distilled, distilled_fast, efficiency_transformer, finetuned (a fine-tuned transformer teacher), student and student_fast (its students, on stored teacher outputs), or a one-feature variant (efficiency_crf, efficiency_vectors, ...; an unknown name lists them all)"),
    lang: Optional[str] = typer.Option(None, "--lang", "-l", help="Language code for [nlp] lang (default: the preset's, en)"),
) -> None:
    """Write a tuned training config (a preset) for `spacy train`. Extra
    `--section.key value` arguments override settings, e.g. `--paths.train
    corpus/train.spacy --training.max_steps 2000`."""
    from spacy.cli._util import parse_config_overrides

    from .presets import init_config, preset_config, preset_names

    overrides = parse_config_overrides(ctx.args, env_var=None)
    try:
        hint = train_hint("THIS.cfg" if output == "-" else output, preset_config(preset, lang=lang, overrides=overrides))
        text = init_config(preset, output, lang=lang, overrides=overrides, train_hint=hint)
    except (ValueError, FileNotFoundError) as err:
        msg.fail(str(err), exits=1)
    if output == "-":
        print(text, end="")
    else:
        msg.good(f"Wrote preset {preset!r} to {output} (presets: {', '.join(preset_names())})")
        msg.text(f"Train it: {hint}")


def train_hint(config_path: str, config: dict) -> str:
    """The `spacy train` command for a written config: a placeholder only for
    a corpus path the config lacks, and the paths it already has named, so
    the hint never asks again for what --paths.train / --paths.dev gave."""
    import shlex

    paths = config.get("paths", {})
    missing = [key for key in ("train", "dev") if paths.get(key) in (None, "")]
    placeholders = [f"--paths.{key} {key.upper()}.spacy" for key in missing]
    if "teacher_outputs" in paths and paths["teacher_outputs"] in (None, ""):
        # a student of stored teacher outputs (python -m spacy_lstm_tagger teacher-outputs)
        placeholders.append("--paths.teacher_outputs TEACHER_OUTPUTS_DIR")
    command = " ".join(["python -m spacy train", shlex.quote(str(config_path)), *placeholders])
    given = [f"paths.{key} = {paths[key]}" for key in ("train", "dev") if key not in missing]
    return command + (f" (the config has {', '.join(given)})" if given else "")


class MemberPrecision(str, Enum):
    keep = "keep"
    float32 = "float32"
    bfloat16 = "bfloat16"
    auto = "auto"
    int8 = "int8"


@app.command("ensemble")
def ensemble_command(
    members: List[str] = typer.Argument(..., help="Two or more trained pipeline directories (e.g. one config trained with several seeds)"),
    output: Path = typer.Option(..., "--output", "-o", help="Directory to write the ensemble pipeline to"),
    component: str = typer.Option("lstm_tagger", "--component", "-c", help="The lstm_tagger component of every member"),
    precision: MemberPrecision = typer.Option(MemberPrecision.keep, "--precision", help="Every member's inference: keep (as trained), float32, bfloat16, auto (bfloat16 where the CPU runs it natively) or int8 (quantize)"),
) -> None:
    """Combine trained lstm_tagger pipelines into one whose tagger averages
    their tag probabilities: more accurate than any member, at the cost of
    running each. The first member gives the vocab, tokenizer and other
    components; load the result with spacy.load(OUTPUT)."""
    from .ensemble import assemble

    settings = {
        MemberPrecision.keep: {},
        MemberPrecision.float32: {"bfloat16": False, "quantize": False},
        MemberPrecision.bfloat16: {"bfloat16": True, "quantize": False},
        MemberPrecision.auto: {"bfloat16": "auto", "quantize": False},
        MemberPrecision.int8: {"bfloat16": False, "quantize": True},
    }[precision]
    try:
        nlp = assemble(members, component=component, settings=settings)
        output.parent.mkdir(parents=True, exist_ok=True)
        nlp.to_disk(output)
    except (ValueError, OSError) as err:
        msg.fail(str(err), exits=1)
    msg.good(f"Wrote an ensemble of {len(members)} taggers to {output}")
    msg.text(f"Evaluate it: python -m spacy evaluate {output} DEV.spacy --gold-preproc")


class TagColumn(str, Enum):
    xpos = "xpos"
    upos = "upos"


@app.command("convert")
def convert_command(
    input_path: Path = typer.Argument(..., help="A .conllu file, or a UD treebank directory ({treebank}-ud-{split}.conllu files)"),
    output: Path = typer.Argument(..., help="The .spacy file to write; for a treebank directory, the directory for {treebank}-ud-{train,dev,test}.spacy"),
    n_sents: int = typer.Option(10, "--n-sents", "-n", help="Sentences per Doc (as spacy convert -n)"),
    tags: TagColumn = typer.Option(TagColumn.xpos, "--tags", help="The column Token.tag_ is read from: xpos (column 5) or upos (column 4, for treebanks without XPOS)"),
    dev_output: Optional[Path] = typer.Option(None, "--dev-output", "-d", help="File input: write the last --heldout fraction of the sentences here as a dev set; OUTPUT gets the rest"),
    heldout: float = typer.Option(0.1, "--heldout", help="Fraction of the training sentences held out as dev (--dev-output, or a treebank directory without a dev file)"),
    treebank: Optional[str] = typer.Option(None, "--treebank", help="Directory input: the UD file prefix, e.g. en_ewt (default: the directory's only one)"),
    train_split: str = typer.Option("train", "--train-split", help="Directory input: the training file is {treebank}-ud-{this}.conllu"),
    dev_split: str = typer.Option("dev", "--dev-split", help="Directory input: the dev file; when absent or the training file, dev is held out of train"),
    test_split: str = typer.Option("test", "--test-split", help="Directory input: the test file (optional)"),
) -> None:
    """Convert CoNLL-U to the .spacy training data of `spacy train`, as the
    spaCy project's `convert` step does (it runs this command).

    Unlike `spacy convert --converter conllu`, which writes a word's UPOS as
    its tag when its XPOS is `_`, a word with XPOS `_` gets a missing tag
    (ignored in training and scoring), so UPOS labels never mix into the XPOS
    tag set; a file without any XPOS is an error that points to --tags upos.
    Otherwise the Docs are spacy convert's (-n sentences per Doc).

    A file: IN.conllu -> OUT.spacy (with --dev-output DEV.spacy, its last
    --heldout fraction is a dev set instead). A UD treebank directory: its
    train, dev and test files -> OUTPUT/{treebank}-ud-{train,dev,test}.spacy,
    dev held out of train when there is no dev file.
    """
    from .convert import ConvertError, TreebankSplits, convert_file, convert_treebank, find_treebank

    try:
        if input_path.is_dir():
            if dev_output is not None:
                raise ConvertError("--dev-output is for a file input; a treebank directory writes "
                                   f"{output}/{{treebank}}-ud-dev.spacy")
            splits = TreebankSplits(treebank or find_treebank(input_path), train_split, dev_split, test_split)
            written = convert_treebank(input_path, output, splits, n_sents=n_sents, tags=tags.value,
                                       heldout=heldout, log=msg.info)
        else:
            if output.is_dir():
                raise ConvertError(f"{output} is a directory: name the .spacy file to write")
            written = convert_file(input_path, output, n_sents=n_sents, tags=tags.value, dev_output=dev_output,
                                   heldout=heldout, log=msg.info)
    except (ConvertError, OSError, UnicodeDecodeError) as err:
        msg.fail(str(err), exits=1)
    msg.good(f"Converted {sum(written.values())} sentences ({', '.join(f'{k} {v}' for k, v in written.items())})")


@app.command("teacher-outputs")
def teacher_outputs_command(
    teacher: Path = typer.Argument(..., help="The trained teacher pipeline directory"),
    output: Path = typer.Argument(..., help="The directory to write the outputs to (meta.json + shards)"),
    corpora: List[Path] = typer.Argument(..., help=".spacy files or directories of them, labelled or not (e.g. the training corpus and unlabeled text)"),
    component: str = typer.Option("lstm_tagger", "--component", "-c", help="The teacher's lstm_tagger component"),
    top_k: int = typer.Option(8, "--top-k", "-k", help="Tags kept per token (the rest of the mass is dropped and each row renormalized)"),
    processes: int = typer.Option(1, "--processes", "-n", help="Processes tagging in parallel, 1 torch thread each"),
    shard_size: int = typer.Option(2000, "--shard-size", help="Sentences per stored shard (a rerun resumes at the first missing shard)"),
) -> None:
    """Run the teacher once over the sentences of CORPORA and store each
    token's top-k tag distribution, compressed, with the teacher's
    fingerprint, for `spacy_lstm_tagger.attach_stored_teacher.v1`
    (configs/lstm_tagger_student.cfg): students then train at student speed,
    and outputs of another teacher are refused."""
    from .teacher_outputs import write_teacher_outputs

    try:
        meta = write_teacher_outputs(teacher, output, corpora, component=component, top_k=top_k,
                                     shard_size=shard_size, processes=processes)
    except (ValueError, OSError, RuntimeError) as err:
        msg.fail(str(err), exits=1)
    msg.good(f"Stored the top-{meta['top_k']} tags of {meta['n_tokens']:,} tokens "
             f"({meta['n_sentences']:,} sentences) in {output}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
