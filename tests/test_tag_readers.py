"""Input readers and partitioning of `python -m spacy_lstm_tagger tag`."""
import json

import pytest

from spacy_lstm_tagger.tagging import InputError, iter_records, plan_partitions, read_partition
from spacy_lstm_tagger.tagging.writers import is_done, parse_formats, write_partition

CONLLU = """# newdoc id = d1
# sent_id = s1
# text = I don't like ham.
1	I	I	PRON	PRP	_	3	nsubj	_	_
2-3	don't	_	_	_	_	_	_	_	_
2	do	do	AUX	VBP	_	4	aux	_	_
3	n't	not	PART	RB	_	4	advmod	_	_
4	like	like	VERB	VB	_	0	root	_	_
5	ham	ham	NOUN	NN	_	4	obj	_	SpaceAfter=No
6	.	.	PUNCT	.	_	4	punct	_	_

# sent_id = s2
1	Eat	eat	VERB	VB	_	0	root	_	_
1.1	x	x	X	X	_	_	_	_	_
2	eggs	egg	NOUN	NNS	_	1	obj	_	SpaceAfter=No

# newdoc id = d2
# sent_id = s3
1	Hi	hi	INTJ	UH	_	0	root	_	_
"""


def test_txt_skips_blank_lines_and_keeps_line_numbers(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("\ufefffirst doc\n\n   \nsecond  doc \r\nthird\n", encoding="utf8")
    records = list(iter_records(path, "txt"))
    assert [(r.line, r.text) for r in records] == [(1, "first doc"), (4, "second  doc "), (5, "third")]


def test_jsonl_keeps_other_fields_as_meta(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "a b", "id": 7}\n\n{"text": "c"}\n', encoding="utf8")
    records = list(iter_records(path, "jsonl"))
    assert [(r.line, r.text, r.meta) for r in records] == [(1, "a b", {"id": 7}), (3, "c", {})]


@pytest.mark.parametrize("content,message", [
    ('{"text": "ok"}\n{"text": "bad"\n', r"in.jsonl:2: invalid JSON"),
    ('{"text": "ok"}\n\n{"body": "x"}\n', r"in.jsonl:3: the JSON object has no \"text\" field \(keys: body\)"),
    ('["text"]\n', r"in.jsonl:1: expected a JSON object"),
    ('{"text": 3}\n', r"in.jsonl:1: \"text\" must be a string"),
])
def test_jsonl_errors_name_the_line(tmp_path, content, message):
    path = tmp_path / "in.jsonl"
    path.write_text(content, encoding="utf8")
    with pytest.raises(InputError, match=message):
        plan_partitions([path], 10)


def test_conllu_gold_tokenization_per_sentence(tmp_path):
    path = tmp_path / "in.conllu"
    path.write_text(CONLLU, encoding="utf8")
    records = list(iter_records(path, "conllu"))
    assert [r.words for r in records] == [["I", "do", "n't", "like", "ham", "."], ["Eat", "eggs"], ["Hi"]]
    # the range 2-3 has no SpaceAfter=No: a space after its last word only
    assert records[0].spaces == [True, False, True, True, False, True]
    assert records[1].spaces == [True, False]
    assert [r.meta.get("sent_id") for r in records] == ["s1", "s2", "s3"]
    assert [r.line for r in records] == [1, 12, 17]


def test_conllu_one_doc_per_newdoc(tmp_path):
    path = tmp_path / "in.conllu"
    path.write_text(CONLLU, encoding="utf8")
    records = list(iter_records(path, "conllu", conllu_unit="newdoc"))
    assert [len(r.words) for r in records] == [8, 1]
    assert records[0].sent_starts == [True, False, False, False, False, False, True, False]
    assert [r.meta["newdoc_id"] for r in records] == ["d1", "d2"]
    partitions, _ = plan_partitions([path], 1, conllu_unit="newdoc")
    assert [read_partition(p)[0].words for p in partitions] == [r.words for r in records]


def test_conllu_bad_line(tmp_path):
    path = tmp_path / "in.conllu"
    path.write_text("1\tI\tI\n", encoding="utf8")
    with pytest.raises(InputError, match=r"in.conllu:1: expected 10 tab-separated"):
        plan_partitions([path], 10)


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(InputError, match="Input file not found"):
        plan_partitions([tmp_path / "nope.txt"], 10)
    (tmp_path / "data.csv").write_text("a\n")
    with pytest.raises(InputError, match="--input-format"):
        plan_partitions([tmp_path / "data.csv"], 10)
    assert len(plan_partitions([tmp_path / "data.csv"], 10, input_format="txt")[0]) == 1


def test_partitions_are_deterministic_slices(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.jsonl"
    a.write_text("".join(f"doc {i}\n" + ("\n" if i % 3 == 0 else "") for i in range(23)), encoding="utf8")
    b.write_text("".join(json.dumps({"text": f"é {i}"}) + "\n" for i in range(5)), encoding="utf8")
    partitions, described = plan_partitions([a, b], 10)
    assert [(p.name, p.source, p.first_doc, p.n_docs) for p in partitions] == [
        ("part-00000", str(a), 0, 10), ("part-00001", str(a), 10, 10), ("part-00002", str(a), 20, 3),
        ("part-00003", str(b), 0, 5),
    ]
    assert [d["n_docs"] for d in described] == [23, 5]
    texts = [r.text for p in partitions for r in read_partition(p)]
    assert texts == [f"doc {i}" for i in range(23)] + [f"é {i}" for i in range(5)]
    assert plan_partitions([a, b], 10)[0] == partitions
    # a directory expands to its known files, sorted
    assert plan_partitions([tmp_path], 10)[0] == partitions


def test_writer_is_atomic_and_leaves_no_temp_files(tmp_path, trained_nlp):
    docs = list(trained_nlp.pipe(["I like ham", "Eat eggs"]))
    assert parse_formats("both") == ("spacy", "jsonl")
    assert not is_done(tmp_path, "part-00000", ("spacy", "jsonl"))
    write_partition(docs, tmp_path, "part-00000", ("spacy", "jsonl"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-00000.jsonl", "part-00000.spacy"]
    assert is_done(tmp_path, "part-00000", ("spacy", "jsonl"))
    with pytest.raises(ValueError, match="Unknown output format"):
        parse_formats("csv")


def test_a_partition_edited_after_planning_is_an_error(tmp_path):
    """Same size, same lines, other bytes: reading the partition fails instead
    of tagging text the run did not plan (and the manifest did not record)."""
    path = tmp_path / "in.txt"
    path.write_text("I like ham\nEat eggs\n", encoding="utf8")
    partitions, described = plan_partitions([path], 1)
    assert [len(p.sha256) for p in partitions] == [64, 64] and len(described[0]["sha256"]) == 64
    path.write_text("I like ham\nEat legs\n", encoding="utf8")
    assert [r.text for r in read_partition(partitions[0])] == ["I like ham"]
    with pytest.raises(InputError, match=r"in.txt: partition part-00001 \(from line 2\) changed since the run"):
        read_partition(partitions[1])


def test_conllu_empty_form_names_the_line(tmp_path):
    path = tmp_path / "in.conllu"
    path.write_text("# sent_id = a\n1\tI\t_\t_\t_\t_\t_\t_\t_\t_\n2\t\t_\t_\t_\t_\t_\t_\t_\t_\n", encoding="utf8")
    with pytest.raises(InputError, match=r"in.conllu:3: empty FORM \(column 2\) of token 2"):
        plan_partitions([path], 10)
