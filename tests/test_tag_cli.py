"""`python -m spacy_lstm_tagger tag`: local engine, a pool of 2 processes and
Dask on a 2-worker LocalCluster give identical partitions; a worker killed
mid-run loses and duplicates nothing; a re-run skips finished partitions."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spacy_lstm_tagger.cli import app
from spacy_lstm_tagger.tagging import OutputMismatchError, read_output_docs, read_output_records, tag_corpus


N_DOCS = 3000
PARTITION_SIZE = 100
N_PARTITIONS = N_DOCS // PARTITION_SIZE
FORMATS = ("spacy", "jsonl")
WORDS = "I like green eggs Eat blue ham She ate the ham quickly They zorp Flibbet , .".split()


def part_files(output: Path):
    return sorted(p.name for p in output.glob("part-*"))


def file_bytes(output: Path):
    return {p.name: p.read_bytes() for p in output.glob("part-*")}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("tag")


@pytest.fixture(scope="module")
def corpus(workdir):
    """N_DOCS short synthetic docs, one per line, with blank lines among them."""
    rng = random.Random(0)
    path = workdir / "corpus.txt"
    lines = []
    for i in range(N_DOCS):
        lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))))
        if i % 250 == 0:
            lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf8")
    return path


@pytest.fixture(scope="module")
def reference(trained_model_dir, corpus, workdir):
    """Single-process output: what every other engine must reproduce byte for byte."""
    output = workdir / "ref"
    stats = tag_corpus(trained_model_dir, [corpus], output, formats=FORMATS, partition_size=PARTITION_SIZE, progress=False)
    assert (stats.n_partitions, stats.n_submitted, stats.n_docs) == (N_PARTITIONS, N_PARTITIONS, N_DOCS)
    return output


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = distributed.Client(cluster)
    yield cluster, client
    client.close()
    cluster.close()


def test_single_process_output_is_the_tagged_corpus(reference, trained_model_dir, corpus):
    import spacy

    nlp = spacy.load(trained_model_dir)
    texts = [line for line in corpus.read_text(encoding="utf8").splitlines() if line.strip()]
    records = read_output_records(reference)
    assert [r["text"] for r in records] == texts
    for record in records[:300]:
        assert record["tags"] == [t.tag_ for t in nlp(record["text"])]
    assert len({(r["source"], r["line"]) for r in records}) == N_DOCS
    docs = read_output_docs(reference, nlp.vocab)
    assert [[t.tag_ for t in d] for d in docs] == [r["tags"] for r in records]
    assert docs[0].user_data["input"] == {"source": str(corpus), "line": 1}
    manifest = json.loads((reference / "manifest.json").read_text())
    assert len(manifest["partitions"]) == N_PARTITIONS and manifest["partition_size"] == PARTITION_SIZE


def test_n_process_2_gives_identical_files(reference, trained_model_dir, corpus, tmp_path):
    stats = tag_corpus(trained_model_dir, [corpus], tmp_path / "out", formats=FORMATS, partition_size=PARTITION_SIZE,
                       n_process=2, progress=False)
    assert stats.n_docs == N_DOCS and stats.n_words > N_DOCS
    assert file_bytes(tmp_path / "out") == file_bytes(reference)


def test_local_rerun_redoes_only_missing_partitions(reference, trained_model_dir, corpus, tmp_path):
    output = tmp_path / "out"
    shutil.copytree(reference, output)
    for name in ("part-00003.spacy", "part-00017.jsonl", "part-00029.spacy"):
        (output / name).unlink()
    (output / ".part-00003.spacy.tmp-123-deadbeef").write_bytes(b"half a file")  # a killed writer's leftover
    before = {p.name: p.stat().st_mtime_ns for p in output.glob("part-*")}
    stats = tag_corpus(trained_model_dir, [corpus], output, formats=FORMATS, partition_size=PARTITION_SIZE, progress=False)
    assert (stats.n_submitted, stats.n_skipped, stats.removed_tmp_files) == (3, N_PARTITIONS - 3, 1)
    assert stats.n_docs == 3 * PARTITION_SIZE
    assert file_bytes(output) == file_bytes(reference)
    untouched = [n for n in before if not n.startswith(("part-00003.", "part-00017.", "part-00029."))]
    assert all((output / n).stat().st_mtime_ns == before[n] for n in untouched)


def test_rerun_with_other_partitioning_is_refused(reference, trained_model_dir, corpus, tmp_path):
    output = tmp_path / "out"
    shutil.copytree(reference, output)
    with pytest.raises(OutputMismatchError, match="partition_size"):
        tag_corpus(trained_model_dir, [corpus], output, formats=FORMATS, partition_size=50, progress=False)
    for path in output.glob("part-*"):
        path.unlink()
    # nothing finished yet: the manifest of the earlier attempt is replaced
    stats = tag_corpus(trained_model_dir, [corpus], output, formats=("jsonl",), partition_size=1000, progress=False)
    assert stats.n_partitions == 3 and json.loads((output / "manifest.json").read_text())["partition_size"] == 1000


def test_dask_gives_identical_files(reference, trained_model_dir, corpus, tmp_path, dask_cluster):
    _, client = dask_cluster
    stats = tag_corpus(trained_model_dir, [corpus], tmp_path / "out", formats=FORMATS, partition_size=PARTITION_SIZE,
                       engine="dask", client=client, progress=False)
    assert (stats.engine, stats.workers, stats.n_docs) == ("dask", 2, N_DOCS)
    assert file_bytes(tmp_path / "out") == file_bytes(reference)


def test_dask_worker_killed_mid_run_loses_and_duplicates_nothing(reference, trained_model_dir, corpus, tmp_path,
                                                                 dask_cluster):
    _, client = dask_cluster
    output = tmp_path / "out"
    pids = client.run(os.getpid)  # {worker address: pid}
    victim = sorted(pids.values())[0]
    killed = {}

    def kill_when_first_partition_is_written():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = list(output.glob("part-*.jsonl")) if output.exists() else []
            if done:
                os.kill(victim, signal.SIGKILL)
                killed["after"] = len(done)
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=kill_when_first_partition_is_written)
    watcher.start()
    stats = tag_corpus(trained_model_dir, [corpus], output, formats=FORMATS, partition_size=PARTITION_SIZE,
                       engine="dask", client=client, progress=False)
    watcher.join()
    assert 0 < killed["after"] < N_PARTITIONS, killed  # the worker died mid-run
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it
    assert victim not in client.run(os.getpid).values()
    # every partition exactly once, every doc exactly once, same as one process
    assert stats.n_submitted == N_PARTITIONS and stats.n_docs == N_DOCS
    assert part_files(output) == part_files(reference)
    assert not list(output.glob(".part-*"))  # no temporary files left
    records = read_output_records(output)
    assert len(records) == N_DOCS == len({(r["source"], r["line"]) for r in records})
    assert file_bytes(output) == file_bytes(reference)

    # a re-run finds every partition finished: nothing submitted, nothing rewritten
    mtimes = {p.name: p.stat().st_mtime_ns for p in output.glob("part-*")}
    again = tag_corpus(trained_model_dir, [corpus], output, formats=FORMATS, partition_size=PARTITION_SIZE,
                       engine="dask", client=client, progress=False)
    assert (again.n_submitted, again.n_skipped, again.n_docs) == (0, N_PARTITIONS, 0)
    assert {p.name: p.stat().st_mtime_ns for p in output.glob("part-*")} == mtimes


def test_cli_dask_scheduler_address_with_jsonl_input(trained_model_dir, tmp_path, dask_cluster):
    cluster, _ = dask_cluster
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"text": f"I like ham {i}", "id": i}) + "\n" for i in range(30)))
    result = CliRunner().invoke(app, ["tag", str(trained_model_dir), str(data), "--output", str(tmp_path / "out"),
                                      "--format", "jsonl", "--scheduler", cluster.scheduler_address,
                                      "--partition-size", "8", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "Tagged 30 docs" in result.output
    records = read_output_records(tmp_path / "out")
    assert [r["meta"] for r in records] == [{"id": i} for i in range(30)]
    assert part_files(tmp_path / "out") == [f"part-0000{i}.jsonl" for i in range(4)]
    result = CliRunner().invoke(app, ["tag", str(trained_model_dir), str(data), "-o", str(tmp_path / "out"), "-f", "jsonl",
                                      "--partition-size", "8", "--no-progress"])
    assert result.exit_code == 0 and "Nothing to do: all 4 partitions" in result.output


def test_cli_conllu_keeps_gold_tokenization(trained_model_dir, tmp_path):
    data = tmp_path / "in.conllu"
    data.write_text(
        "# sent_id = a\n1\tI\t_\t_\t_\t_\t_\t_\t_\t_\n2\tlike\t_\t_\t_\t_\t_\t_\t_\t_\n"
        "3\tham\t_\t_\t_\t_\t_\t_\t_\tSpaceAfter=No\n4\t.\t_\t_\t_\t_\t_\t_\t_\t_\n\n"
        "# sent_id = b\n1\tEat-eggs\t_\t_\t_\t_\t_\t_\t_\t_\n\n"
    )
    result = CliRunner().invoke(app, ["tag", str(trained_model_dir), str(data), "-o", str(tmp_path / "out"), "-f", "both"])
    assert result.exit_code == 0, result.output
    records = read_output_records(tmp_path / "out")
    assert [(r["sent_id"], r["text"], r["tokens"]) for r in records] == [
        ("a", "I like ham. ", ["I", "like", "ham", "."]), ("b", "Eat-eggs ", ["Eat-eggs"]),
    ]
    assert all(len(r["tags"]) == len(r["tokens"]) for r in records)


@pytest.mark.parametrize("content,name,message", [
    (None, "missing.txt", "Input file not found"),
    ('{"text": "a"}\n{"txt": "b"}\n', "in.jsonl", 'in.jsonl:2: the JSON object has no "text" field'),
    ('{"text": "a"}\n{oops\n', "in.jsonl", "in.jsonl:2: invalid JSON"),
])
def test_cli_bad_input_gives_a_clear_error(trained_model_dir, tmp_path, content, name, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    result = CliRunner().invoke(app, ["tag", str(trained_model_dir), str(path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
    assert not list((tmp_path / "out").glob("part-*")) if (tmp_path / "out").exists() else True


def test_cli_missing_model(tmp_path):
    (tmp_path / "in.txt").write_text("hello\n")
    result = CliRunner().invoke(app, ["tag", str(tmp_path / "no_model"), str(tmp_path / "in.txt"),
                                      "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and "Model not found" in result.output


def test_cli_confusion_report(trained_model_dir, tmp_path):
    data = tmp_path / "gold.conllu"
    data.write_text("1\tI\t_\t_\tPRP\t_\t_\t_\t_\t_\n2\tlike\t_\t_\tVBP\t_\t_\t_\t_\t_\n"
                    "3\tham\t_\t_\tNN\t_\t_\t_\t_\t_\n\n")
    result = CliRunner().invoke(app, ["confusion", str(trained_model_dir), str(data), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "confusion.json").read_text())["n_tokens"] == 3


def test_python_dash_m_and_console_script():
    result = subprocess.run([sys.executable, "-m", "spacy_lstm_tagger", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "tag" in result.stdout and "confusion" in result.stdout
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert 'spacy-lstm-tagger = "spacy_lstm_tagger.cli:main"' in pyproject
    script = shutil.which("spacy-lstm-tagger")
    if script:  # installed (pip install -e . after the script was added)
        result = subprocess.run([script, "tag", "--help"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "--engine" in result.stdout
