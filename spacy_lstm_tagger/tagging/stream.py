"""``tag -o -``: stream JSONL or CoNLL-U to a text stream (stdout), in input
order, as the Docs are tagged. No partitions, manifest or resuming: a pipe
has nothing to resume. The inputs are still checked before any tagging."""
import time
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Sequence, Tuple, Union

from spacy.tokens import Doc

from ..loading import check_model, extension_attrs
from .core import TagStats, attach_info, load_model, record_input
from .core import progress_bar as _progress
from .readers import Record, iter_records, plan_partitions
from .writers import TEXT_FORMATS, docs_to_text

STREAM_PARTITION = 1 << 62  # one "partition" per file: planning only validates and counts


def stream_corpus(
    model: Union[str, Path],
    inputs: Sequence[Union[str, Path]],
    out: BinaryIO,
    *,
    fmt: str = "jsonl",
    input_format: str = "auto",
    conllu_unit: str = "sentence",
    batch_size: int = 256,
    n_process: int = 1,
    threads: Optional[int] = None,
    progress: Optional[bool] = None,
    probabilities: bool = False,
    sentences: str = "sentencizer",
) -> TagStats:
    """Tag ``inputs`` and write ``fmt`` (jsonl or conllu) UTF-8 to ``out``,
    flushed after every batch (``sentences`` as in :func:`tag_corpus`)."""
    if fmt not in TEXT_FORMATS:
        raise ValueError(f"Only {' and '.join(TEXT_FORMATS)} can stream to stdout, not {fmt!r}: "
                         "use --output DIR for .spacy files")
    if batch_size < 1 or n_process < 1:
        raise ValueError("batch_size and n_process must be at least 1")
    model = str(Path(model).resolve()) if Path(model).exists() else str(model)
    check_model(model)
    partitions, _ = plan_partitions(inputs, STREAM_PARTITION, input_format, conllu_unit)
    if threads:
        import torch

        torch.set_num_threads(threads)
    stats = TagStats(engine=f"local(n_process={n_process})", output="-", n_partitions=len(partitions),
                     n_submitted=len(partitions), workers=n_process)
    start = time.perf_counter()
    nlp = load_model(model, probabilities, sentences)
    attrs = extension_attrs(nlp)
    stats.setup_seconds = time.perf_counter() - start

    def records() -> Iterator[Tuple[Union[str, Doc], Record]]:
        for part in partitions:
            for record in iter_records(part.path, part.input_format, source=part.source,
                                       conllu_unit=part.conllu_unit):
                yield record_input(nlp, record), record

    batch = []
    with _progress(sum(p.n_docs for p in partitions), progress, "tagging") as bar:
        for doc, record in nlp.pipe(records(), as_tuples=True, batch_size=batch_size, n_process=n_process):
            batch.append(attach_info(doc, record))
            if len(batch) == batch_size:
                _write(out, batch, fmt, attrs, stats)
                bar.update(len(batch))
                batch = []
        if batch:
            _write(out, batch, fmt, attrs, stats)
            bar.update(len(batch))
    stats.seconds = time.perf_counter() - start
    return stats


def _write(out: BinaryIO, docs, fmt: str, attrs, stats: TagStats) -> None:
    out.write(docs_to_text(docs, fmt, attrs).encode("utf8"))
    out.flush()
    stats.n_docs += len(docs)
    stats.n_words += sum(len(d) for d in docs)
