"""benchmarks/treebank_stats.py: each fact counted by hand on a tiny treebank."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import treebank_stats  # noqa: E402


def conllu(sentences):
    blocks = []
    for sentence in sentences:
        rows = [f"{i}\t{form}\t{form.lower()}\tX\t{tag}\t_\t0\tdep\t_\t_" for i, (form, tag) in enumerate(sentence, 1)]
        blocks.append("\n".join(["# text = " + " ".join(f for f, _ in sentence), *rows]))
    return "\n\n".join(blocks) + "\n"


def test_facts_of_a_tiny_treebank(tmp_path):
    train = [[("a", "D"), ("dog", "N")], [("a", "D"), ("run", "V")], [("run", "N"), ("x", "_")]] * 3
    # the split holds out the last 10% (1 of 10 sentences): add one to drop
    dev_file = train + [[("held", "H")]]
    test = [[("a", "D"), ("run", "V"), ("cat", "N")], [("run", "N")]]
    folder = tmp_path / "xx_tiny"
    folder.mkdir()
    (folder / "xx_tiny-ud-dev.conllu").write_text(conllu(dev_file), encoding="utf8")
    (folder / "xx_tiny-ud-test.conllu").write_text(conllu(test), encoding="utf8")
    out = tmp_path / "stats.json"
    facts = treebank_stats.main(["--data-dir", str(tmp_path), "--treebanks", "xx_tiny", "--output", str(out)])["xx_tiny"]
    assert facts["train_sentences"] == 9 and facts["train_words"] == 18 and facts["test_words"] == 4
    assert facts["xpos_tags"] == 3  # D, N, V ("_" is no tag; "H" was held out)
    assert facts["empty_xpos_train_pct"] == round(100 * 3 / 18, 2)
    assert facts["test_unseen_pct"] == 25.0  # "cat"
    assert facts["test_seen_ambiguous_pct"] == 50.0  # both "run"s: seen as V and N
    # majority tags: a -> D (right), run -> V or N (3 each; Counter keeps the first seen, V): right once
    assert facts["majority_tag_acc_seen"] == round(100 * 2 / 3, 2) and facts["majority_tag_acc_all"] == 50.0
    assert out.is_file()
