"""A saved pipeline that disagrees with itself never loads silently: labels
vs weights, model attrs vs weights, corrupted or non-finite weights,
decompression bombs, and config bounds at build time."""
import inspect
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Callable, Dict

import pytest
import spacy
import srsly
import torch
from spacy.training import Example

from conftest import TINY_MODEL, TRAIN_DATA, train_tiny
from spacy_lstm_tagger import weights
from spacy_lstm_tagger.config_checks import ARCHITECTURE_BOUNDS, check_architecture_args
from spacy_lstm_tagger.model import (
    HEAD_DIMS, build_wordchar_bilstm_tagger, build_wordchar_bilstm_tagger_v2, get_torch_module,
)

JOINT_DATA = [
    ("I like green eggs", {"tags": ["PRP", "VBP", "JJ", "NNS"], "pos": ["PRON", "VERB", "ADJ", "NOUN"],
                           "morphs": ["Case=Nom", "Tense=Pres", "Degree=Pos", "Number=Plur"]}),
    ("She ate the ham quickly", {"tags": ["PRP", "VBD", "DT", "NN", "RB"], "pos": ["PRON", "VERB", "DET", "NOUN", "ADV"],
                                 "morphs": ["Case=Nom", "Tense=Past", "Definite=Def", "Number=Sing", "_"]}),
]
TEXTS = [text for text, _ in TRAIN_DATA]


@pytest.fixture(scope="module")
def saved(tmp_path_factory, trained_nlp) -> Path:
    """A trained pipeline on disk (tests copy it before editing)."""
    path = tmp_path_factory.mktemp("saved")
    trained_nlp.to_disk(path)
    return path


@pytest.fixture(scope="module")
def joint_saved(tmp_path_factory) -> Path:
    """An lstm_joint_tagger (tag, POS and FEATS heads) on disk."""
    nlp = spacy.blank("en")
    nlp.add_pipe("lstm_joint_tagger", name="lstm_tagger", config={"model": dict(TINY_MODEL)})
    examples = [Example.from_dict(nlp.make_doc(text), annots) for text, annots in JOINT_DATA]
    nlp.initialize(lambda: examples)
    path = tmp_path_factory.mktemp("joint")
    nlp.to_disk(path)
    return path


@pytest.fixture
def workdir(tmp_path_factory) -> Path:
    """A directory whose path does not contain the test's name (error
    messages quote the path: matching them must not match the name)."""
    return tmp_path_factory.mktemp("w")


def copy_pipeline(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def edit_cfg(path: Path, edit: Callable[[Dict], None]) -> None:
    cfg_file = path / "lstm_tagger" / "cfg"
    cfg = json.loads(cfg_file.read_text())
    edit(cfg)
    cfg_file.write_text(json.dumps(cfg))


def edit_model_msg(path: Path, edit: Callable[[Dict, Dict], None]) -> None:
    """Edit the model file: ``edit(thinc_msg, weights_msg)`` may change the
    Thinc node attrs and the weights message (format, state, sha256, info)."""
    model_file = path / "lstm_tagger" / "model"
    msg = srsly.msgpack_loads(model_file.read_bytes())
    shim = srsly.msgpack_loads(msg["shims"][1][0])
    inner = srsly.msgpack_loads(shim["state"])
    edit(msg, inner)
    shim["state"] = srsly.msgpack_dumps(inner)
    msg["shims"][1][0] = srsly.msgpack_dumps(shim)
    model_file.write_bytes(srsly.msgpack_dumps(msg))


def rewrite_state(inner: Dict, edit: Callable[[Dict[str, torch.Tensor]], None], archive: Callable = None) -> None:
    """Replace the saved tensors, keeping the file self-consistent (valid
    checksum): what a buggy or malicious writer, not a damaged disk, produces."""
    state = torch.load(io.BytesIO(inner["state"]), weights_only=True)
    edit(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue() if archive is None else archive(buffer.getvalue())
    inner["state"] = data
    if "sha256" in inner:
        import hashlib

        inner["sha256"] = hashlib.sha256(data).hexdigest()


def as_version_1(msg: Dict, inner: Dict) -> None:
    """What spacy-lstm-tagger wrote before checksums (format version 1)."""
    inner["format_version"] = 1
    del inner["sha256"]
    del inner["info"]
    del inner["info_sha256"]


def as_version_2(msg: Dict, inner: Dict) -> None:
    """What spacy-lstm-tagger wrote before the info had a checksum and the
    label lists themselves (format version 2)."""
    inner["format_version"] = 2
    del inner["info_sha256"]
    for head in inner["info"]["labels"].values():
        del head["names"]


def load_as(version: int, path: Path):
    """``spacy.load(path)``; version 1 files only load when re-saving."""
    if version == 1:
        with weights.accepting_version_1():
            return spacy.load(path)
    return spacy.load(path)


def tags(nlp, texts=TEXTS):
    return [[t.tag_ for t in doc] for doc in nlp.pipe(texts)]


# --- labels vs weights ------------------------------------------------

LABEL_EDITS = {
    "one removed": lambda labels: labels[:-1],
    "one added at the start": lambda labels: ["XX"] + labels,
    "one added at the end": lambda labels: labels + ["XX"],
    "two swapped": lambda labels: [labels[1], labels[0]] + labels[2:],
    "one renamed": lambda labels: ["XX"] + labels[1:],
    "empty": lambda labels: [],
}


@pytest.mark.parametrize("edit", list(LABEL_EDITS), ids=list(LABEL_EDITS))
def test_cfg_labels_that_do_not_match_the_weights_fail_at_load(saved, workdir, edit):
    path = copy_pipeline(saved, workdir / "p")
    edit_cfg(path, lambda cfg: cfg.update(labels=LABEL_EDITS[edit](cfg["labels"])))
    with pytest.raises(ValueError, match="lstm_tagger.*(labels|label list)"):
        spacy.load(path)


@pytest.mark.parametrize(
    "bad", [None, ["PRP", 5], ["PRP", ""], ["PRP", None], "PRP"], ids=["missing", "int", "empty string", "null", "string"]
)
def test_missing_empty_or_non_string_labels_fail_at_load(saved, workdir, bad):
    path = copy_pipeline(saved, workdir / "p")
    if bad is None:
        edit_cfg(path, lambda cfg: cfg.pop("labels"))
    else:
        edit_cfg(path, lambda cfg: cfg.update(labels=bad))
    with pytest.raises(ValueError, match="lstm_tagger.*label"):
        spacy.load(path)


@pytest.mark.parametrize("edit", ["two swapped", "one removed"])
@pytest.mark.parametrize("head", ["pos", "morph"])
def test_joint_head_labels_are_checked_against_their_head(joint_saved, workdir, edit, head):
    path = copy_pipeline(joint_saved, workdir / "p")
    key = f"{head}_labels"
    edit_cfg(path, lambda cfg: cfg.update({key: LABEL_EDITS[edit](cfg[key])}))
    with pytest.raises(ValueError, match=f"{head} labels"):
        spacy.load(path)
    spacy.load(joint_saved)  # the unedited pipeline loads


def test_bytes_roundtrip_checks_labels_too(trained_nlp):
    data = trained_nlp.get_pipe("lstm_tagger").to_bytes()
    msg = srsly.msgpack_loads(data)
    cfg = srsly.json_loads(msg["cfg"])
    cfg["labels"] = cfg["labels"][::-1]
    msg["cfg"] = srsly.json_dumps(cfg)
    fresh = spacy.blank("en").add_pipe("lstm_tagger", config={"model": TINY_MODEL})
    with pytest.raises(ValueError, match="labels"):
        fresh.from_bytes(srsly.msgpack_dumps(msg))
    fresh.from_bytes(data)  # and the untouched bytes load


# --- model attrs vs weights --------------------------------------------


@pytest.mark.parametrize("attr", ["crf", "joint_pos"])
def test_switch_flipped_in_the_model_file_fails_at_load(saved, workdir, attr):
    path = copy_pipeline(saved, workdir / "p")
    edit_model_msg(path, lambda msg, inner: msg["attrs"][0].update({attr: srsly.msgpack_dumps(True)}))
    with pytest.raises(ValueError, match=f"{attr} = True"):
        spacy.load(path)


# --- corruption, dtypes, non-finite values --------------------------------


def test_one_flipped_byte_in_the_weights_fails_at_load(saved, trained_nlp, workdir):
    path = copy_pipeline(saved, workdir / "p")
    model_file = path / "lstm_tagger" / "model"
    data = bytearray(model_file.read_bytes())
    # a byte in the middle of the word table's values: without a checksum it
    # only changes one weight
    table = get_torch_module(trained_nlp.get_pipe("lstm_tagger").model).word_embed.weight
    start = bytes(data).find(table.detach().numpy().tobytes()[:64])
    assert start > 0
    data[start + table.numel() * 2 + 1] ^= 0x40
    model_file.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"the tensors \(state\) do not match their sha256 checksum"):
        spacy.load(path)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda s: s["output.bias"].fill_(float("nan")), "output.bias has NaN"),
        (lambda s: s["lstm.weight_hh_l0"].fill_(float("inf")), "lstm.weight_hh_l0 has NaN or infinite"),
        (lambda s: s.update({"output.weight": s["output.weight"].to(torch.int64)}), "output.weight is saved as torch.int64"),
        (lambda s: s.update({"word_embed.weight": s["word_embed.weight"].to(torch.int32)}), "word_embed.weight is saved as torch.int32"),
    ],
    ids=["nan", "inf", "int64 output", "int32 embedding"],
)
@pytest.mark.parametrize("version", [3, 2, 1])
def test_non_float_or_non_finite_weights_fail_at_load(saved, workdir, edit, match, version):
    path = copy_pipeline(saved, workdir / "p")

    def corrupt(msg, inner):
        rewrite_state(inner, edit)
        {1: as_version_1, 2: as_version_2, 3: lambda *_: None}[version](msg, inner)

    edit_model_msg(path, corrupt)
    with pytest.raises(ValueError, match=match):
        load_as(version, path)


def test_other_format_versions_are_refused(saved, workdir):
    path = copy_pipeline(saved, workdir / "p")
    edit_model_msg(path, lambda msg, inner: inner.update(format_version=weights.MODEL_FORMAT_VERSION + 1))
    with pytest.raises(ValueError, match="reads 'spacy_lstm_tagger.WordCharBiLSTM' versions 2 and 3"):
        spacy.load(path)


def test_resaving_keeps_the_checks(saved, workdir):
    """A loaded pipeline saves the same info again (to_disk after from_disk)."""
    nlp = spacy.load(saved)
    nlp.to_disk(workdir / "again")
    edit_cfg(workdir / "again", lambda cfg: cfg.update(labels=LABEL_EDITS["two swapped"](cfg["labels"])))
    with pytest.raises(ValueError, match="not the ones the weights were trained with"):
        spacy.load(workdir / "again")


# --- every byte that decides the tags is checked ---------------------


def swap_two_labels(path: Path) -> None:
    edit_cfg(path, lambda cfg: cfg.update(labels=LABEL_EDITS["two swapped"](cfg["labels"])))


def test_saved_info_is_checksummed_and_holds_the_labels(saved, trained_nlp):
    inner = srsly.msgpack_loads(srsly.msgpack_loads(srsly.msgpack_loads(
        (saved / "lstm_tagger" / "model").read_bytes())["shims"][1][0])["state"])
    assert inner["format_version"] == weights.MODEL_FORMAT_VERSION == 3
    assert inner["info_sha256"] == weights.info_checksum(inner["info"])
    assert inner["info"]["labels"]["tag"]["names"] == list(trained_nlp.get_pipe("lstm_tagger").labels)


@pytest.mark.parametrize("convert", [None, as_version_2], ids=["v3", "v2"])
def test_removed_info_with_swapped_labels_is_refused(saved, workdir, convert):
    """Without the info nothing could confirm the label order: refused,
    whatever the format version says (it tagged NN as NNS)."""
    path = copy_pipeline(saved, workdir / "p")

    def drop_info(msg, inner):
        if convert:
            convert(msg, inner)
        del inner["info"]
        inner.pop("info_sha256", None)

    edit_model_msg(path, drop_info)
    swap_two_labels(path)
    with pytest.raises(ValueError, match=r"their info \(the label lists the weights were trained with\) is missing"):
        spacy.load(path)


@pytest.mark.parametrize("target", ["fingerprint", "label name", "switch"])
def test_one_flipped_byte_in_the_info_names_the_info_not_the_cfg(saved, trained_nlp, workdir, target):
    path = copy_pipeline(saved, workdir / "p")
    model_file = path / "lstm_tagger" / "model"
    data = bytearray(model_file.read_bytes())
    labels = list(trained_nlp.get_pipe("lstm_tagger").labels)
    needle = {
        "fingerprint": weights.label_fingerprint(labels).encode(),
        "label name": srsly.msgpack_dumps(labels),  # the tag head's list of names
        "switch": srsly.msgpack_dumps({"crf": False})[1:],  # the key and its value in the attrs map
    }[target]
    start = bytes(data).find(needle)
    assert start > 0 and bytes(data).count(needle) == 1
    flip = {"fingerprint": (start + 7, 0x01), "label name": (start + 2, 0x01), "switch": (start + len(needle) - 1, 0x01)}
    offset, mask = flip[target]
    data[offset] ^= mask  # a hex digit / a letter of the first label / false -> true
    model_file.write_bytes(bytes(data))
    with pytest.raises(ValueError) as err:
        spacy.load(path)
    message = str(err.value)
    assert "info" in message and "does not match its sha256 checksum" in message and "the cfg" not in message


def test_a_label_mismatch_says_what_differs(saved, trained_nlp, workdir):
    labels = list(trained_nlp.get_pipe("lstm_tagger").labels)
    path = copy_pipeline(saved, workdir / "p")
    swap_two_labels(path)
    with pytest.raises(ValueError, match=f"label #0 is {labels[1]!r} in the cfg, {labels[0]!r} in the weights"):
        spacy.load(path)
    path = copy_pipeline(saved, workdir / "q")
    edit_cfg(path, lambda cfg: cfg.update(labels=["XX"] + cfg["labels"][1:]))
    with pytest.raises(ValueError, match=f"the weights have {labels[0]!r}, the cfg has 'XX' instead"):
        spacy.load(path)


def test_version_2_files_still_load_with_their_checks(saved, trained_nlp, workdir):
    path = copy_pipeline(saved, workdir / "p")
    edit_model_msg(path, as_version_2)
    assert tags(spacy.load(path)) == tags(trained_nlp)
    swap_two_labels(path)
    with pytest.raises(ValueError, match="not the ones the weights were trained with.*version 2 files do not checksum"):
        spacy.load(path)


@pytest.mark.parametrize("swap", [False, True], ids=["same labels", "reordered labels"])
def test_version_1_files_are_refused_with_the_resave_command(saved, workdir, swap):
    """A version 1 file can't confirm its label order: refused in one line
    that says how to re-save it, reordered labels or not."""
    path = copy_pipeline(saved, workdir / "p")
    edit_model_msg(path, as_version_1)
    if swap:
        swap_two_labels(path)
    with pytest.raises(ValueError) as err:
        spacy.load(path)
    assert "format version 1" in str(err.value) and weights.RESAVE_COMMAND in str(err.value)
    assert "\n" not in str(err.value)


def test_resaved_version_1_pipeline_loads_with_every_check(saved, trained_nlp, workdir):
    from spacy_lstm_tagger.resave import main

    path = copy_pipeline(saved, workdir / "p")
    edit_model_msg(path, as_version_1)
    assert main([str(path), str(path)]) == 1  # never over itself
    assert main([str(path), str(workdir / "new")]) == 0
    assert tags(spacy.load(workdir / "new")) == tags(trained_nlp)
    swap_two_labels(workdir / "new")
    with pytest.raises(ValueError, match="label #0"):
        spacy.load(workdir / "new")
    edit_cfg(path, lambda cfg: cfg.update(labels=cfg["labels"][:-1]))  # re-saving keeps the count check
    with pytest.raises(ValueError, match="output rows"):
        with weights.accepting_version_1():
            spacy.load(path)


PEAK_SCRIPT = """
import sys, spacy, spacy_lstm_tagger
try:  # a plugin spaCy imports through its entry points while loading (~100 MB of transformers)
    import spacy_transformers
except ImportError:
    pass
def peak_mb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) // 1024
before = peak_mb()
try:
    spacy.load(sys.argv[1])
except ValueError as err:
    print("refused:", err)
print("peak_increase_mb", peak_mb() - before)
"""


def test_a_huge_model_file_of_zeros_is_refused_without_reading_it(saved, workdir):
    """Measured in a fresh process: spaCy reading the file whole, then
    msgpack copying what follows its first byte, peaked at twice its size."""
    import subprocess
    import sys

    path = copy_pipeline(saved, workdir / "p")
    model_file = path / "lstm_tagger" / "model"
    model_file.unlink()
    with model_file.open("wb") as f:
        f.truncate(512 << 20)  # sparse: no disk space used
    result = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(path)], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "refused:" in result.stdout and str(model_file) in result.stdout and "not a saved model" in result.stdout
    increase = int(result.stdout.split("peak_increase_mb")[1])
    assert increase < 64, result.stdout


def test_bytes_after_the_saved_model_are_refused(saved, workdir):
    path = copy_pipeline(saved, workdir / "p")
    model_file = path / "lstm_tagger" / "model"
    model_file.write_bytes(model_file.read_bytes() + b"\0" * 1000)
    with pytest.raises(ValueError, match="1000 bytes follow the saved model"):
        spacy.load(path)


# --- decompression bomb ---------------------------------------------------


def deflate(archive: bytes) -> bytes:
    """Re-pack torch.save's zip with deflate, as the red team did."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for entry in src.infolist():
            dst.writestr(entry.filename, src.read(entry.filename))
    return out.getvalue()


@pytest.mark.parametrize("inflate", [True, False], ids=["inflated table", "same tensors"])
def test_recompressed_weights_are_refused_before_any_tensor_is_read(saved, workdir, monkeypatch, inflate):
    path = copy_pipeline(saved, workdir / "p")
    n = 8_000_000  # 32 MB of zeros deflate to ~32 KB

    def edit(state):
        if inflate:
            state["word_embed.weight"] = torch.zeros(n // 16, 16)

    edit_model_msg(path, lambda msg, inner: rewrite_state(inner, edit, archive=deflate))
    assert (path / "lstm_tagger" / "model").stat().st_size < n * 4 // 8  # it would inflate 8x and more
    materialized = []
    real_load = torch.load

    def watching_load(*args, **kwargs):
        if kwargs.get("map_location") != "meta":
            materialized.append(args)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", watching_load)
    with pytest.raises(ValueError, match="compressed"):
        spacy.load(path)
    assert not materialized


# --- config bounds ----------------------------------------------------------


@pytest.mark.parametrize(
    "setting",
    [
        {"n_word_hashes": 5},
        {"depth": 1_000_000},
        {"depth": 0},
        {"hidden_size": 100_000},
        {"n_word_rows": 1},
        {"n_word_rows": 10**9},
        {"word_embed_size": 0},
        {"n_chars": 100},
        {"max_word_chars": 0},
        {"dropout": 1.0},
        {"word_dropout": -0.1},
        {"max_window": 0},
        {"window_context": -1},
        {"max_window": 10, "window_context": 5},
        {"word_attr": "NOT_AN_ATTR"},
        {"nO": 0},
    ],
    ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()),
)
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_out_of_bounds_config_fails_when_the_model_is_built(setting, version):
    nlp = spacy.blank("en")
    name = next(iter(setting))
    architecture = f"spacy_lstm_tagger.WordCharBiLSTM.{version}"
    with pytest.raises(ValueError, match=f"{architecture}.*{name}"):
        nlp.add_pipe("lstm_tagger", config={"model": {"@architectures": architecture, **TINY_MODEL, **setting}})


@pytest.mark.parametrize("setting", [{"n_prefixes": 50}, {"n_suffixes": -1}, {"n_affix_rows": 0}, {"affix_embed_size": 5000}, {"joint_morph": "yes"}])
def test_out_of_bounds_v2_settings_fail_when_the_model_is_built(setting):
    with pytest.raises(ValueError, match=f"WordCharBiLSTM.v2.*{next(iter(setting))}"):
        build_wordchar_bilstm_tagger_v2(**{**TINY_MODEL, **setting})


def test_n_word_hashes_bound_is_what_training_supports():
    """5 is refused when the model is built (it would fail at the first update); 4 trains."""
    nlp = train_tiny(n_iter=1, n_word_hashes=4)
    assert len(tags(nlp)) == len(TEXTS)
    with pytest.raises(ValueError, match="n_word_hashes = 5: must be in \\[1, 4\\]"):
        train_tiny(n_iter=1, n_word_hashes=5)


@pytest.mark.parametrize(
    "setting", [{"depth": 2.5}, {"depth": True}, {"crf": 1}, {"dropout": "0.1"}, {"word_attr": 3}, {"dropout": float("nan")}]
)
def test_wrong_types_are_refused(setting):
    args = {**TINY_MODEL, **setting}
    with pytest.raises(ValueError, match=next(iter(setting))):
        check_architecture_args("spacy_lstm_tagger.WordCharBiLSTM.v1", **args)


def test_every_architecture_argument_has_bounds_and_unknown_ones_are_refused():
    for builder in (build_wordchar_bilstm_tagger, build_wordchar_bilstm_tagger_v2):
        assert set(inspect.signature(builder).parameters) <= set(ARCHITECTURE_BOUNDS)
    assert list(weights.HEAD_OUTPUTS) == list(HEAD_DIMS)  # the checked heads are the model's heads
    with pytest.raises(ValueError, match="new_size: no bounds are declared"):
        check_architecture_args(new_size=3)
    check_architecture_args(**TINY_MODEL)  # the test config is fine
