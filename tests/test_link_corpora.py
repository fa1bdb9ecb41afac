"""scripts/link_corpora.py: a student's training corpus as one directory of
links, the annotated corpus repeated (--gold-share) so that it is not drowned
by a large unlabeled text; spaCy's Corpus reads every copy."""
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc, DocBin
from spacy.training import Corpus

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from link_corpora import gold_copies, link_corpora  # noqa: E402


def write_docbin(path: Path, n_docs: int, n_words: int) -> Path:
    nlp = spacy.blank("en")
    DocBin(docs=[Doc(nlp.vocab, words=[f"w{i}"] * n_words) for i in range(n_docs)]).to_disk(path)
    return path


@pytest.fixture
def files(tmp_path):
    return write_docbin(tmp_path / "train.spacy", 2, 5), write_docbin(tmp_path / "unlabeled.spacy", 6, 10)


def test_without_gold_share_each_file_is_linked_once(files, tmp_path):
    assert link_corpora(tmp_path / "corpus", files) == 1
    assert sorted(p.name for p in (tmp_path / "corpus").iterdir()) == ["train.spacy", "unlabeled.spacy"]


@pytest.mark.parametrize("share,copies", [(0.5, 6), (0.25, 2), (0.01, 1), (0.9, 54)])
def test_gold_share_repeats_the_annotated_corpus(files, share, copies):
    # 10 annotated tokens against 60 unlabeled ones
    assert gold_copies(files, share) == copies


def test_spacy_reads_every_copy(files, tmp_path):
    corpus = tmp_path / "corpus"
    link_corpora(corpus, files, gold_share=0.5)
    nlp = spacy.blank("en")
    n_annotated = sum(len(eg.reference) == 5 for eg in Corpus(corpus)(nlp))
    assert n_annotated == 2 * 6
    # a second call replaces the links instead of adding to them
    link_corpora(corpus, files)
    assert len(list(corpus.glob("*.spacy"))) == 2


def test_bad_input_is_a_clear_error(files, tmp_path):
    with pytest.raises(SystemExit, match="not a .spacy file"):
        link_corpora(tmp_path / "corpus", [tmp_path / "missing.spacy", files[1]])
    with pytest.raises(SystemExit, match="between 0 and 1"):
        link_corpora(tmp_path / "corpus", files, gold_share=1.5)
    empty = tmp_path / "empty.spacy"
    DocBin().to_disk(empty)
    with pytest.raises(SystemExit, match="has no tokens"):
        link_corpora(tmp_path / "corpus", [empty, files[1]], gold_share=0.5)


def test_command_line(files, tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "link_corpora.py"), str(tmp_path / "c"),
                          *map(str, files), "--gold-share", "0.5"], capture_output=True, text=True, check=True)
    assert "train.spacy x6" in out.stdout
    assert len(list((tmp_path / "c").glob("train*.spacy"))) == 6
