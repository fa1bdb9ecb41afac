"""The tag CLI's reliability promises: bad input and bad
arguments stop before anything is written, interrupts leave only complete
partitions and no orphan workers, a resume refuses changed models and inputs,
and which outputs are byte-identical."""
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import spacy
from spacy.language import Language
from spacy.util import minibatch
from typer.testing import CliRunner

from spacy_lstm_tagger.cli import app
from spacy_lstm_tagger.tagging import (
    InputError, OutputMismatchError, TaggingError, read_output_docs, read_output_records, tag_corpus,
)

from conftest import train_tiny

ROOT = Path(__file__).resolve().parent.parent
WORDS = "I like green eggs Eat blue ham She ate the ham quickly They zorp Flibbet , .".split()
N_LONG = 4000  # docs of the corpus the interrupt tests signal mid-run (100 partitions of 40)
CONLLU_ROW = "{i}\t{form}\t_\t_\t_\t_\t_\t_\t_\t_\n"


def corpus_lines(n: int, seed: int = 0):
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 14))) for _ in range(n)]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("reliability")


@pytest.fixture(scope="module")
def prob_model_dir(trained_model_dir, workdir):
    """The same weights, with ``store_probabilities = true``."""
    path = workdir / "model_probs"
    spacy.load(trained_model_dir, config={"components": {"lstm_tagger": {"store_probabilities": True}}}).to_disk(path)
    return path


def nothing_written(output: Path) -> bool:
    return not output.exists() or not any(output.iterdir())


# --- 7, 8: bad input stops before tagging, naming file and line ----------------

BAD_JSONL = [
    ('{"text": "ok", "id": 123456789012345678901234567890}', "integer beyond 64 bits"),
    ('{"text": "ok", "id": -9223372036854775809}', "integer beyond 64 bits"),
    ('{"text": "bad \\ud800 text"}', "lone surrogate"),
    ('{"text": "ok", "note": "bad \\udfff"}', "lone surrogate"),
    ('{"text": "ok", "bad \\ud800 key": 1}', "lone surrogate"),
    ('{"text": "ok", "deep": ' + "[" * 5000 + "]" * 5000 + "}", "nested"),
    ('{"text": "ok", "deep": ' + "[" * 600 + "]" * 600 + "}", "nested"),
    ('{"text": "ok", "score": NaN}', "NaN"),
    ('{"text": "ok", "score": Infinity}', "Infinity"),
    ('{"text": "ok", "score": [1e400]}', "1e400"),
    ('{"text": "ok", "score": {"x": -1e400}}', "-1e400"),
]


@pytest.mark.parametrize("line,problem", BAD_JSONL, ids=lambda v: v[:40] if isinstance(v, str) else v)
def test_bad_jsonl_stops_before_tagging_naming_file_and_line(trained_model_dir, tmp_path, line, problem):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "fine", "id": 18446744073709551615}\n' + line + '\n{"text": "after"}\n',
                    encoding="utf8")
    output = tmp_path / "out"
    with pytest.raises(InputError) as err:
        tag_corpus(trained_model_dir, [path], output, formats="both", progress=False)
    assert f"{path}:2:" in str(err.value) and problem in str(err.value)
    assert nothing_written(output)


def test_empty_conllu_form_stops_before_tagging(trained_model_dir, tmp_path):
    path = tmp_path / "in.conllu"
    path.write_text(CONLLU_ROW.format(i=1, form="Hi") + "\n" + CONLLU_ROW.format(i=1, form="I")
                    + CONLLU_ROW.format(i=2, form="") + "\n", encoding="utf8")
    output = tmp_path / "out"
    result = CliRunner().invoke(app, ["tag", str(trained_model_dir), str(path), "-o", str(output)])
    assert result.exit_code == 1
    assert f"{path}:4: empty FORM" in " ".join(result.output.split())
    assert nothing_written(output)


@pytest.mark.parametrize("name", ["in.txt", "in.jsonl"])
def test_text_beyond_max_length_stops_before_tagging(trained_model_dir, tmp_path, name):
    path = tmp_path / name
    long_text = "ham " * 250_001  # 1,000,004 characters
    lines = ["I like ham", long_text]
    path.write_text("".join((json.dumps({"text": t}) if name.endswith("jsonl") else t) + "\n" for t in lines),
                    encoding="utf8")
    output = tmp_path / "out"
    with pytest.raises(InputError, match=rf"{name}:2: a text of 1,000,004 characters, more than spaCy's nlp.max_length"):
        tag_corpus(trained_model_dir, [path], output, progress=False)
    assert nothing_written(output)


def test_valid_extreme_meta_round_trips(trained_model_dir, tmp_path):
    """The limits are the formats' own: 64-bit integers and finite floats pass."""
    path = tmp_path / "in.jsonl"
    meta = {"big": 18446744073709551615, "small": -9223372036854775808, "f": 1.7976931348623157e308,
            "nested": [[[{"a": "é \U0001F600"}]]]}
    path.write_text(json.dumps({"text": "I like ham", **meta}) + "\n", encoding="utf8")
    tag_corpus(trained_model_dir, [path], tmp_path / "out", formats="both", progress=False)
    line = (tmp_path / "out" / "part-00000.jsonl").read_text(encoding="utf8")
    assert json.loads(line)["meta"] == meta
    nlp = spacy.load(trained_model_dir)
    stored = read_output_docs(tmp_path / "out", nlp.vocab)[0].user_data["input"]["meta"]
    assert json.loads(json.dumps(stored)) == meta  # (msgpack gives lists back as tuples)


# --- 9: bad arguments: one-line errors, nothing written -----------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line_error(result) -> str:
    """The one error message (wasabi wraps it at the terminal width), no traceback."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.output.count("\u2718") == 1 and "Traceback" not in result.output, result.output
    return " ".join(result.output.split())


@pytest.fixture
def small_input(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("I like ham\nEat eggs\n", encoding="utf8")
    return path


def test_output_that_is_a_file(trained_model_dir, small_input, tmp_path):
    target = tmp_path / "taken"
    target.write_text("keep me\n")
    line = one_line_error(CliRunner().invoke(app, ["tag", str(trained_model_dir), str(small_input), "-o", str(target)]))
    assert str(target) in line and "not a directory" in line
    assert target.read_text() == "keep me\n"
    line = one_line_error(CliRunner().invoke(app, ["tag", str(trained_model_dir), str(small_input),
                                                   "-o", str(target / "sub" / "out")]))
    assert str(target) in line and "not a directory" in line
    assert target.read_text() == "keep me\n"


def test_output_not_writable(trained_model_dir, small_input, tmp_path):
    if os.geteuid() == 0:
        parent = Path("/sys")  # root may write anywhere but in sysfs
        if not parent.is_dir():
            pytest.skip("running as root without /sys: no unwritable directory to test with")
    else:
        parent = tmp_path / "ro"
        parent.mkdir()
        parent.chmod(0o500)
    output = parent / "spacy-lstm-tagger-out"
    line = one_line_error(CliRunner().invoke(app, ["tag", str(trained_model_dir), str(small_input), "-o", str(output)]))
    assert "Cannot write" in line and str(output) in line
    assert not output.exists()


@pytest.mark.parametrize("args,message", [
    (["--threads", "-2"], "--threads must be at least 1, got -2"),
    (["--threads", "0"], "--threads must be at least 1, got 0"),
    (["--engine", "dask", "--n-workers", "0"], "--n-workers must be at least 1, got 0"),
    (["--n-process", "0"], "--n-process must be at least 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--partition-size", "0"], "--partition-size must be at least 1, got 0"),
])
def test_bad_numbers_are_rejected(trained_model_dir, small_input, tmp_path, args, message):
    output = tmp_path / "out"
    line = one_line_error(CliRunner().invoke(app, ["tag", str(trained_model_dir), str(small_input), "-o", str(output),
                                                   *args]))
    assert message in line
    assert not output.exists()


def test_unreachable_scheduler_fails_fast_naming_the_address(trained_model_dir, small_input, tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    output = tmp_path / "out"
    start = time.monotonic()
    line = one_line_error(CliRunner().invoke(app, ["tag", str(trained_model_dir), str(small_input), "-o", str(output),
                                                   "--scheduler", address]))
    assert time.monotonic() - start < 20  # (Dask itself would retry for 30 s)
    assert address in line and "scheduler" in line
    assert not output.exists()


# --- 11: a resume refuses a changed model or input ------------------------------

def test_resume_refuses_another_model_at_the_same_path(trained_model_dir, small_input, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(trained_model_dir, model)
    output = tmp_path / "out"
    tag_corpus(model, [small_input], output, partition_size=1, progress=False)
    (output / "part-00001.spacy").unlink()
    shutil.rmtree(model)
    train_tiny(n_iter=2, seed=1).to_disk(model)  # another model, same path
    with pytest.raises(OutputMismatchError) as err:
        tag_corpus(model, [small_input], output, partition_size=1, progress=False)
    assert "model" in str(err.value) and "start over" in str(err.value) and str(output) in str(err.value)
    assert not (output / "part-00001.spacy").exists()


def test_resume_refuses_an_input_edited_in_place(trained_model_dir, tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("I like ham\nEat eggs\nThey like eggs\n", encoding="utf8")
    output = tmp_path / "out"
    tag_corpus(trained_model_dir, [path], output, partition_size=1, progress=False)
    (output / "part-00002.spacy").unlink()
    stat = path.stat()
    path.write_text("I like yam\nEat eggs\nThey like eggs\n", encoding="utf8")  # same size, same lines
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even the same mtime
    with pytest.raises(OutputMismatchError) as err:
        tag_corpus(trained_model_dir, [path], output, partition_size=1, progress=False)
    assert str(path) in str(err.value) and "start over" in str(err.value)
    assert not (output / "part-00002.spacy").exists()
    # unchanged inputs and model: the resume goes ahead
    path.write_text("I like ham\nEat eggs\nThey like eggs\n", encoding="utf8")
    stats = tag_corpus(trained_model_dir, [path], output, partition_size=1, progress=False)
    assert (stats.n_skipped, stats.n_submitted) == (2, 1)


# --- a resume never keeps stale or damaged partitions ---------------

THREE_LINES = "I like ham\nEat eggs\nThey like eggs\n"


@pytest.fixture(scope="module")
def other_model_dir(workdir) -> Path:
    """A model that tags every word NN: its output can't pass for the trained one's."""
    path = workdir / "all_nn"
    data = [(text, {"tags": ["NN"] * len(text.split())}) for text in corpus_lines(8, seed=3)]
    train_tiny(n_iter=20, data=data).to_disk(path)
    return path


@pytest.fixture
def three_lines(tmp_path) -> Path:
    path = tmp_path / "in.txt"
    path.write_text(THREE_LINES, encoding="utf8")
    return path


@pytest.fixture
def forget_models(monkeypatch):
    """Call it to have the next load read the model from disk again (the
    process cache keeps the first model loaded from a path)."""
    from spacy_lstm_tagger.tagging import core

    monkeypatch.setattr(core, "_NLP_CACHE", {})
    return core._NLP_CACHE.clear


def tags_of(output: Path):
    return [r["tags"] for r in read_output_records(output)]


def test_model_fingerprint_follows_a_symlinked_component_folder(trained_model_dir, other_model_dir, tmp_path):
    from spacy_lstm_tagger.tagging.manifest import model_fingerprint

    real = tmp_path / "real"
    shutil.copytree(trained_model_dir, real)
    linked = tmp_path / "linked"
    shutil.copytree(trained_model_dir, linked, ignore=shutil.ignore_patterns("lstm_tagger"))
    target = tmp_path / "component"
    shutil.copytree(trained_model_dir / "lstm_tagger", target)
    (linked / "lstm_tagger").symlink_to(target, target_is_directory=True)
    (linked / "loop").symlink_to(linked, target_is_directory=True)  # read once (adds no file), no hang
    assert model_fingerprint(str(linked)) == model_fingerprint(str(real))
    before = model_fingerprint(str(linked))
    shutil.copy(other_model_dir / "lstm_tagger" / "model", target / "model")
    assert model_fingerprint(str(linked)) != before


def test_resume_refuses_weights_changed_behind_a_symlinked_component(trained_model_dir, other_model_dir,
                                                                    three_lines, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(trained_model_dir, model, ignore=shutil.ignore_patterns("lstm_tagger"))
    target = tmp_path / "component"
    shutil.copytree(trained_model_dir / "lstm_tagger", target)
    (model / "lstm_tagger").symlink_to(target, target_is_directory=True)
    output = tmp_path / "out"
    tag_corpus(model, [three_lines], output, formats="jsonl", partition_size=1, progress=False)
    (output / "part-00002.jsonl").unlink()  # as if killed before the last partition
    shutil.copy(other_model_dir / "lstm_tagger" / "model", target / "model")  # new weights behind the link
    with pytest.raises(OutputMismatchError, match="the model at .* has changed"):
        tag_corpus(model, [three_lines], output, formats="jsonl", partition_size=1, progress=False)
    assert not (output / "part-00002.jsonl").exists()


def test_without_a_manifest_old_partitions_are_redone_not_adopted(trained_model_dir, other_model_dir, three_lines,
                                                                  tmp_path, forget_models):
    model = tmp_path / "model"
    shutil.copytree(trained_model_dir, model)
    output = tmp_path / "out"
    tag_corpus(model, [three_lines], output, formats="jsonl", partition_size=1, progress=False)
    assert any(tag != "NN" for tags in tags_of(output) for tag in tags)
    (output / "manifest.json").unlink()
    shutil.rmtree(model)
    shutil.copytree(other_model_dir, model)  # another model at the same path
    forget_models()
    stats = tag_corpus(model, [three_lines], output, formats="jsonl", partition_size=1, progress=False)
    assert (stats.n_submitted, stats.n_skipped, stats.n_redone) == (3, 0, 3)
    assert all("before this run's manifest.json" in why for why in stats.redone)
    assert all(tag == "NN" for tags in tags_of(output) for tag in tags)


@pytest.mark.parametrize("damage", ["truncated", "edited", "not recorded", "torn record"])
def test_a_damaged_or_unrecorded_partition_is_redone(trained_model_dir, three_lines, tmp_path, damage):
    from spacy_lstm_tagger.tagging.manifest import FINISHED

    output = tmp_path / "out"
    tag_corpus(trained_model_dir, [three_lines], output, formats=("spacy", "jsonl"), partition_size=1, progress=False)
    reference = file_bytes(output)
    log = output / FINISHED
    lines = log.read_text(encoding="utf8").splitlines(keepends=True)
    victim = json.loads(lines[-1])["name"] if damage == "torn record" else "part-00000"  # (only the last can tear)
    part = output / f"{victim}.jsonl"
    first = next(i for i, line in enumerate(lines) if f'"{victim}"' in line)
    if damage == "truncated":
        part.write_bytes(part.read_bytes()[:-30])
    elif damage == "edited":  # same length
        part.write_bytes(part.read_bytes().replace(b'"VBP"', b'"NNS"', 1))
    elif damage == "not recorded":  # killed between writing the files and recording them
        log.write_text("".join(lines[:first] + lines[first + 1:]), encoding="utf8")
    else:
        log.write_text("".join(lines[:first] + [lines[first][:40]] + lines[first + 1:]), encoding="utf8")
    assert file_bytes(output) != reference or damage in ("not recorded", "torn record")
    stats = tag_corpus(trained_model_dir, [three_lines], output, formats=("spacy", "jsonl"), partition_size=1,
                       progress=False)
    assert (stats.n_submitted, stats.n_skipped, stats.n_redone) == (1, 2, 1)
    assert stats.redone[0].startswith(f"{victim}: {victim}.")
    assert file_bytes(output) == reference
    again = tag_corpus(trained_model_dir, [three_lines], output, formats=("spacy", "jsonl"), partition_size=1,
                       progress=False)
    assert (again.n_submitted, again.n_skipped) == (0, 3)


def test_cli_says_which_partitions_it_redid(trained_model_dir, three_lines, tmp_path):
    output = tmp_path / "out"
    args = ["tag", str(trained_model_dir), str(three_lines), "--output", str(output), "--partition-size", "1",
            "--format", "jsonl", "--no-progress"]
    assert CliRunner().invoke(app, args).exit_code == 0
    part = output / "part-00001.jsonl"
    part.write_bytes(part.read_bytes()[:10])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Redid 1 partitions" in text and "part-00001.jsonl has 10 bytes" in text


def test_partitions_written_by_worker_processes_are_recorded(trained_model_dir, three_lines, tmp_path):
    output = tmp_path / "out"
    tag_corpus(trained_model_dir, [three_lines], output, partition_size=1, n_process=2, progress=False)
    again = tag_corpus(trained_model_dir, [three_lines], output, partition_size=1, progress=False)
    assert (again.n_submitted, again.n_skipped, again.n_redone) == (0, 3, 0)


# --- 12: which outputs are byte-identical -------------------------------------

@Language.factory("batch_witness")
class BatchWitness:
    """Marks every Doc with the batch it was tagged in (process, batch number):
    placed after the tagger with the same batch size, it sees the same batches."""

    def __init__(self, nlp: Language, name: str):
        self.counter = itertools.count()

    def __call__(self, doc):
        return next(self.pipe([doc]))

    def pipe(self, docs, batch_size: int = 128):
        for batch in minibatch(docs, batch_size):
            batch_id = [os.getpid(), next(self.counter)]
            for doc in batch:
                doc.user_data["batch"] = batch_id
            yield from batch


def test_batches_never_cross_a_partition(trained_model_dir, varied_corpus, tmp_path):
    nlp = spacy.load(trained_model_dir)
    nlp.add_pipe("batch_witness")
    nlp.to_disk(tmp_path / "model")
    output = tmp_path / "out"
    tag_corpus(tmp_path / "model", [varied_corpus], output, partition_size=7, batch_size=5, n_process=2,
               progress=False)
    partitions_of_batch = {}
    from spacy.tokens import DocBin

    for path in sorted(output.glob("part-*.spacy")):
        for doc in DocBin().from_disk(path).get_docs(nlp.vocab):
            partitions_of_batch.setdefault(tuple(doc.user_data["batch"]), set()).add(path.name)
    assert len(partitions_of_batch) == 42 * 2 + 2  # 42 partitions of 5 + 2 docs, the last of 5 + 1
    assert all(len(names) == 1 for names in partitions_of_batch.values())


def file_bytes(output: Path):
    return {p.name: p.read_bytes() for p in sorted(output.glob("part-*"))}


@pytest.fixture(scope="module")
def varied_corpus(workdir):
    path = workdir / "varied.txt"
    path.write_text("\n".join(corpus_lines(300, seed=3)) + "\n", encoding="utf8")
    return path


def test_probabilities_byte_identical_across_processes(prob_model_dir, varied_corpus, tmp_path):
    """Same --batch-size: .spacy (with tag_prob) and JSONL are byte-identical
    for one process and --n-process 2 (batches never cross a partition)."""
    kwargs = dict(formats="both", partition_size=7, batch_size=5, progress=False)
    tag_corpus(prob_model_dir, [varied_corpus], tmp_path / "one", **kwargs)
    tag_corpus(prob_model_dir, [varied_corpus], tmp_path / "two", n_process=2, **kwargs)
    assert file_bytes(tmp_path / "two") == file_bytes(tmp_path / "one")


def test_other_batch_size_same_tags_close_probabilities(trained_model_dir, prob_model_dir, varied_corpus, tmp_path):
    """Another --batch-size: the same tokens and tags; tag_prob values agree
    to 1e-6 (not bit for bit). Without probabilities the JSONL files are
    byte-identical."""
    nlp = spacy.load(prob_model_dir)
    outputs = {}
    for batch_size in (1, 64):
        for model in (prob_model_dir, trained_model_dir):
            output = tmp_path / f"{model.name}-b{batch_size}"
            tag_corpus(model, [varied_corpus], output, formats="both", partition_size=100, batch_size=batch_size,
                       progress=False)
            outputs[model.name, batch_size] = output
    plain = {k: {n: b for n, b in file_bytes(v).items() if n.endswith(".jsonl")} for k, v in outputs.items()
             if k[0] == "model"}
    assert plain["model", 1] == plain["model", 64] and len(plain["model", 1]) == 3
    records = {b: read_output_records(outputs["model_probs", b]) for b in (1, 64)}
    assert [(r["tokens"], r["tags"]) for r in records[1]] == [(r["tokens"], r["tags"]) for r in records[64]]
    docs = {b: read_output_docs(outputs["model_probs", b], nlp.vocab) for b in (1, 64)}
    probs = {b: [t._.tag_prob for d in ds for t in d] for b, ds in docs.items()}
    assert len(probs[1]) == len(probs[64]) > 1000
    assert max(abs(a - b) for a, b in zip(probs[1], probs[64])) < 1e-6


# --- 10: interrupts -----------------------------------------------------------

@pytest.fixture(scope="module")
def long_corpus(workdir):
    """Enough partitions that a run is still going when the test signals it."""
    path = workdir / "long.txt"
    path.write_text("\n".join(corpus_lines(N_LONG, seed=5)) + "\n", encoding="utf8")
    return path


def start_cli(model: Path, corpus: Path, output: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-m", "spacy_lstm_tagger", "tag", str(model), str(corpus), "-o", str(output),
         "--partition-size", "40", "--batch-size", "16", "--no-progress", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def wait_for_partitions(proc: subprocess.Popen, output: Path, timeout: float = 120) -> None:
    """Until a partition is written and recorded as finished: a partition
    written but not yet recorded when the run stops is redone on resume, not
    skipped (on a loaded machine the record can lag the file)."""
    from spacy_lstm_tagger.tagging.manifest import FINISHED

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = output / FINISHED
        if any(output.glob("part-*.spacy")) and log.exists() and b"\n" in log.read_bytes():
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be interrupted: {proc.stdout.read()}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail("no partition written in time")


def wait_gone(pids, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.05)
    return alive


def check_complete_partitions(output: Path) -> None:
    """Some partitions written, not all, each complete; no temporary files."""
    from spacy.tokens import DocBin

    assert not list(output.glob(".part-*")), "temporary files left behind"
    done = sorted(output.glob("part-*.spacy"))
    assert 0 < len(done) < N_LONG // 40
    assert all(len(DocBin().from_disk(path)) == 40 for path in done)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_n_process_stops_workers_and_keeps_complete_partitions(trained_model_dir, long_corpus, tmp_path,
                                                                         signum):
    output = tmp_path / "out"
    proc = start_cli(trained_model_dir, long_corpus, output, "--n-process", "2")
    wait_for_partitions(proc, output)
    workers = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    assert workers
    proc.send_signal(signum)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the main process did not exit within 30 s of {signum!r}")
    assert proc.returncode != 0
    assert "Interrupted" in out and "Traceback" not in out, out
    assert not wait_gone(workers, 20)
    check_complete_partitions(output)
    # the same command resumes and finishes the run
    stats = tag_corpus(trained_model_dir, [long_corpus], output, partition_size=40, batch_size=16, progress=False)
    assert stats.n_skipped > 0 and len(list(output.glob("part-*.spacy"))) == N_LONG // 40


def test_workers_exit_when_the_main_process_is_killed(trained_model_dir, long_corpus, tmp_path):
    output = tmp_path / "out"
    proc = start_cli(trained_model_dir, long_corpus, output, "--n-process", "2")
    wait_for_partitions(proc, output)
    workers = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    assert workers
    proc.kill()
    proc.wait()
    alive = wait_gone(workers, 20)
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "worker processes outlived the main process"


def test_a_killed_pool_worker_fails_the_run_cleanly(trained_model_dir, long_corpus, tmp_path):
    """A worker process killed mid-run: the run stops with an error naming it
    (no hang), the other worker is stopped, and the same command resumes."""
    import threading

    output = tmp_path / "out"
    killed = []

    def kill_a_worker_after_the_first_partition():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            me = psutil.Process()
            children = [c for c in me.children() if c.cmdline() == me.cmdline()]  # forked workers only
            if children and output.exists() and any(output.glob("part-*.spacy")):
                killed.extend(c.pid for c in children)
                children[0].kill()
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_a_worker_after_the_first_partition, daemon=True)
    watcher.start()
    with pytest.raises(TaggingError, match=r"Worker process \d+ died \(exit code -9\) while tagging partition part-"):
        tag_corpus(trained_model_dir, [long_corpus], output, partition_size=40, batch_size=16, n_process=2, progress=False)
    watcher.join()
    assert not wait_gone(killed, 20)
    check_complete_partitions(output)
    stats = tag_corpus(trained_model_dir, [long_corpus], output, partition_size=40, batch_size=16, progress=False)
    assert stats.n_skipped > 0 and stats.n_skipped + stats.n_submitted == N_LONG // 40


# --- the tagging package's modules import each other without cycles -----

def test_tagging_modules_import_without_cycles():
    """Every import between ``spacy_lstm_tagger/tagging/*.py`` (also the lazy
    ones inside functions) points down a fixed order: no module needs a
    module that needs it back (engines <-> dask_engine was such a cycle)."""
    import ast

    package = ROOT / "spacy_lstm_tagger" / "tagging"
    modules = {p.stem for p in package.glob("*.py")} - {"__init__"}
    graph = {}
    for name in modules:
        tree = ast.parse((package / f"{name}.py").read_text(encoding="utf8"))
        graph[name] = {node.module for node in ast.walk(tree)
                       if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module in modules}
    assert graph["dask_engine"] and graph["engines"]  # (the test sees the imports)
    visiting, done = set(), set()

    def visit(name, path):
        assert name not in visiting, f"import cycle: {' -> '.join(path + [name])}"
        if name in done:
            return
        visiting.add(name)
        for dep in graph[name]:
            visit(dep, path + [name])
        visiting.discard(name)
        done.add(name)

    for name in sorted(modules):
        visit(name, [])
