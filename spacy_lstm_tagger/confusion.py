"""Tag confusion report: where does a tagger fail?

Evaluates any spaCy pipeline that sets ``Token.tag_`` on gold-tokenized data
(``.spacy`` DocBin or ``.conllu``) and writes per-tag precision / recall / F1,
the most frequent confusions, and a confusion-matrix PNG of the most confused
tags.

    python -m spacy_lstm_tagger confusion MODEL DATA --output DIR
"""
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple, Union

import numpy
import srsly
from spacy.language import Language
from spacy.tokens import Doc, DocBin

from .loading import load_pipeline


def load_gold_docs(nlp: Language, path: Union[str, Path]) -> List[Doc]:
    """Gold Docs, one per sentence, from a ``.spacy`` file or a ``.conllu``
    file (read as ``convert`` reads it: an XPOS ``_`` is a missing tag). One
    Doc per sentence is what ``spacy evaluate --gold-preproc`` and the
    project's evaluate step tag, so ``tag_acc`` here is their number."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Evaluation data not found: {path}")
    if path.suffix == ".spacy":
        docs = list(DocBin().from_disk(path).get_docs(nlp.vocab))
    elif path.suffix == ".conllu":
        from .convert import read_sentences, to_docs

        docs = to_docs(read_sentences(path), path)
    else:
        raise ValueError(f"Unsupported evaluation file {path}: expected .spacy or .conllu")
    # (as spaCy's Corpus(gold_preproc=True))
    return [sent.as_doc() for doc in docs for sent in (doc.sents if doc.has_annotation("SENT_START") else [doc[:]])]


def tag_pairs(nlp: Language, gold_docs: Iterable[Doc], batch_size: int = 256) -> List[Tuple[str, str]]:
    """(gold, predicted) tag pairs, predicting on the gold tokenization."""
    gold_docs = list(gold_docs)
    inputs = (Doc(nlp.vocab, words=[t.text for t in d], spaces=[bool(t.whitespace_) for t in d]) for d in gold_docs)
    pairs = []
    for gold, pred in zip(gold_docs, nlp.pipe(inputs, batch_size=batch_size)):
        pairs.extend((g.tag_, p.tag_) for g, p in zip(gold, pred) if g.tag_)
    return pairs


def per_tag_scores(pairs: List[Tuple[str, str]]) -> Dict[str, Dict[str, float]]:
    """Precision, recall, F1 and support (gold count) for every tag."""
    gold_counts = Counter(g for g, _ in pairs)
    pred_counts = Counter(p for _, p in pairs)
    correct = Counter(g for g, p in pairs if g == p)
    scores = {}
    for tag in sorted(set(gold_counts) | set(pred_counts)):
        p = correct[tag] / pred_counts[tag] if pred_counts[tag] else 0.0
        r = correct[tag] / gold_counts[tag] if gold_counts[tag] else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        scores[tag] = {"p": round(p, 4), "r": round(r, 4), "f": round(f, 4), "support": gold_counts[tag]}
    return scores


def confusion_report(pairs: List[Tuple[str, str]], top_n: int = 15) -> Dict:
    errors = Counter((g, p) for g, p in pairs if g != p)
    return {
        "n_tokens": len(pairs),
        "tag_acc": round(sum(g == p for g, p in pairs) / len(pairs), 4) if pairs else None,
        "per_tag": per_tag_scores(pairs),
        "top_confusions": [{"gold": g, "predicted": p, "count": c} for (g, p), c in errors.most_common(top_n)],
    }


def most_confused_tags(pairs: List[Tuple[str, str]], n_tags: int) -> List[str]:
    errors = Counter()
    for g, p in pairs:
        if g != p:
            errors[g] += 1
            errors[p] += 1
    return [tag for tag, _ in errors.most_common(n_tags)]


PLOT_INSTALL = 'pip install "spacy-lstm-tagger[plot]"'


def check_plotting() -> None:
    """Fail before any work if matplotlib (the ``plot`` extra) is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(
            f"confusion.png needs matplotlib, which is not installed: {PLOT_INSTALL} "
            "(or pass --no-plot to write confusion.json only)"
        ) from None


def plot_confusion(pairs: List[Tuple[str, str]], png_path: Path, n_tags: int = 15) -> None:
    """Confusion matrix (row-normalized, diagonal blanked) of the most confused tags."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tags = most_confused_tags(pairs, n_tags)
    index = {t: i for i, t in enumerate(tags)}
    matrix = numpy.zeros((len(tags), len(tags)), dtype="int64")
    for g, p in pairs:
        if g in index and p in index and g != p:
            matrix[index[g], index[p]] += 1
    fig, ax = plt.subplots(figsize=(max(4, 1 + 0.5 * len(tags)), max(3.5, 1 + 0.45 * len(tags))))
    if not tags:
        ax.text(0.5, 0.5, "no tagging errors", ha="center", va="center")
        ax.set_axis_off()
        fig.savefig(png_path, dpi=110)
        plt.close(fig)
        return
    image = ax.imshow(matrix, cmap="Reds")
    ax.set_xticks(range(len(tags)), tags, rotation=90)
    ax.set_yticks(range(len(tags)), tags)
    ax.set_xlabel("predicted tag")
    ax.set_ylabel("gold tag")
    ax.set_title(f"Errors among the {len(tags)} most confused tags")
    for i in range(len(tags)):
        for j in range(len(tags)):
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)


def run_confusion(model: Union[str, Path], data: Union[str, Path], output: Union[str, Path],
                  top_n: int = 15, batch_size: int = 256, plot: bool = True) -> Dict:
    """Evaluate ``model`` on ``data``; write ``confusion.json`` (and with
    ``plot``, ``confusion.png``) to ``output``. A missing model, a directory
    that is not a pipeline or a pipeline without a tagger is a ``ModelError``."""
    if plot:
        check_plotting()
    if not Path(data).exists():
        raise FileNotFoundError(f"Evaluation data not found: {data}")
    nlp = load_pipeline(model)
    pairs = tag_pairs(nlp, load_gold_docs(nlp, data), batch_size=batch_size)
    if not pairs:
        raise ValueError(f"No gold tags found in {data}: nothing to evaluate")
    report = confusion_report(pairs, top_n=top_n)
    report.update({"model": str(model), "data": str(data)})
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output / "confusion.json", report)
    if plot:
        plot_confusion(pairs, output / "confusion.png", n_tags=top_n)
    return report


def print_report(report: Dict, n_rows: Optional[int] = None) -> None:
    from wasabi import msg

    msg.info(f"tag_acc {report['tag_acc']:.4f} over {report['n_tokens']} tokens")
    rows = sorted(report["per_tag"].items(), key=lambda kv: -kv[1]["support"])[:n_rows]
    msg.table([[t, s["p"], s["r"], s["f"], s["support"]] for t, s in rows],
              header=["tag", "P", "R", "F", "support"], divider=True)
    msg.table([[c["gold"], c["predicted"], c["count"]] for c in report["top_confusions"]],
              header=["gold", "predicted", "count"], divider=True)
