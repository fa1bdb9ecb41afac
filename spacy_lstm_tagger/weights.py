"""The saved weight format of the torch module, and the load-time checks that
make a saved pipeline which disagrees with itself fail with a clear error.

A weights file (the shim's part of ``<component>/model``) is a msgpack map:

* ``format`` / ``format_version``: what reads it (:data:`MODEL_FORMAT_VERSION`);
* ``state``: the module's ``state_dict`` saved by ``torch.save`` (tensors
  only, so it loads with ``weights_only=True``);
* ``sha256``: the checksum of ``state``: a flipped byte is an error, not a
  changed weight;
* ``info``: what the component said about the weights when it saved them:
  each head's label list (version 3; version 2 kept only its fingerprint)
  and the model's switches (its ``bool`` attrs: ``crf``, ``joint_pos``...).
  At load the component compares them with its ``cfg`` labels and the
  model's attrs (:func:`check_loaded_weights`), so an edited, reordered or
  truncated label list, or a switch flipped in the model file, fails at
  load instead of shifting every tag or crashing at the first call;
* ``info_sha256`` (version 3): the checksum of ``info``, so every byte that
  decides the tags (tensors, label order, switches) is covered, and a
  mismatch says which of the two was damaged.

Version 2 files (info not checksummed) still load, with every other check;
their ``info`` must be present. Version 1 files (no checksum, no info: a
reordered label list there would shift every tag silently) are refused
with how to re-save them (``python -m spacy_lstm_tagger.resave``).

Nothing here names a parameter except the heads' output layers
(:data:`HEAD_OUTPUTS`): shapes and dtypes are checked against the module the
config built, so new inputs and layers are covered without edits.
"""
import contextlib
import contextvars
import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import srsly
import torch
from torch import nn

from .pytorch_model import HEADS

MODEL_FORMAT = "spacy_lstm_tagger.WordCharBiLSTM"
MODEL_FORMAT_VERSION = 3
"""Bump when the saved weights change meaning. Version 2 (info without its
own checksum) is still read; version 1 only inside :func:`accepting_version_1`
(what the re-save command does); any other version fails clearly."""
LEGACY_FORMAT_VERSION = 2

RESAVE_COMMAND = "python -m spacy_lstm_tagger.resave PIPELINE_DIR NEW_DIR"

_ACCEPT_VERSION_1: contextvars.ContextVar = contextvars.ContextVar("accept_version_1", default=False)

HEAD_OUTPUTS: Dict[str, str] = dict(zip(("tag", "pos", "morph"), HEADS))
"""Each head's name (as ``model.HEAD_DIMS`` and the component name it) -> the
module's output ``nn.Linear`` whose rows score that head's labels."""

INFO_ATTR = "saved_weights_info"
"""Attribute of the torch module holding the info saved with (and loaded
from) its weights; set by :func:`describe_weights`, and at load, where it
also records the ``format_version`` the weights were read from."""

_ARCHIVE_SLACK_BYTES = 1 << 16


@contextlib.contextmanager
def accepting_version_1() -> Iterator[None]:
    """Load version 1 weights inside this block, trusting the cfg's label
    order (nothing in a version 1 file can confirm it): for re-saving them
    in the current format after checking the labels."""
    token = _ACCEPT_VERSION_1.set(True)
    try:
        yield
    finally:
        _ACCEPT_VERSION_1.reset(token)


def info_checksum(info: Mapping[str, Any]) -> str:
    """sha256 of the info in a canonical form (sorted keys), so the same
    info always gives the same checksum whatever order msgpack kept."""
    return hashlib.sha256(json.dumps(info, sort_keys=True, ensure_ascii=False).encode("utf8")).hexdigest()


def label_fingerprint(labels: Sequence[str]) -> str:
    """sha256 of the label list in order: changes if a label is added,
    removed, edited or moved."""
    return hashlib.sha256(json.dumps(list(labels), ensure_ascii=False).encode("utf8")).hexdigest()


def model_switches(attrs: Mapping[str, Any]) -> Dict[str, bool]:
    """The architecture's on/off settings among a Thinc model's attrs: these
    change the module's structure, so the weights must agree with them."""
    return {name: value for name, value in attrs.items() if isinstance(value, bool)}


def describe_weights(
    module: nn.Module, labels_by_head: Mapping[str, Optional[Sequence[str]]], attrs: Mapping[str, Any]
) -> None:
    """Record on ``module`` what the next :func:`serialize_torch_module` stores
    with its weights: the label fingerprints per head (``None``: head off)
    and the switches."""
    info = {
        "labels": {
            head: {"n": len(labels or ()), "fingerprint": label_fingerprint(labels or ()), "names": list(labels or ())}
            for head, labels in labels_by_head.items()
        },
        "attrs": model_switches(attrs),
    }
    setattr(module, INFO_ATTR, info)


def serialize_torch_module(module: nn.Module) -> bytes:
    """The module's state dict (tensors only), its checksum and its info."""
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    state = buffer.getvalue()
    info = {k: v for k, v in (getattr(module, INFO_ATTR, None) or {}).items() if k in ("labels", "attrs")}
    return srsly.msgpack_dumps({
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "state": state,
        "sha256": hashlib.sha256(state).hexdigest(),
        "info": info,
        "info_sha256": info_checksum(info),
    })


def check_model_file(path: Union[str, Path]) -> None:
    """Before Thinc reads a component's ``model`` file whole (and msgpack
    copies what follows a damaged start): the file must be one msgpack map
    ending where the file ends. It is streamed, holding at most its largest
    entry, and no entry may declare more bytes than the file has, so a file
    of zeros or garbage of any size is refused after reading a few bytes."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        unpacker = srsly.msgpack.Unpacker(f, read_size=1 << 16, max_buffer_size=max(size, 1))
        try:
            for _ in range(2 * unpacker.read_map_header()):
                unpacker.skip()
        except Exception as err:  # (msgpack raises several types on garbage and truncation)
            raise ValueError(
                f"{path} is truncated or is not a saved model ({size} bytes; not one msgpack map: {err})"
            ) from None
    if unpacker.tell() != size:
        raise ValueError(f"{path} is corrupted: {size - unpacker.tell()} bytes follow the saved model")


def deserialize_torch_module(module: nn.Module, data: bytes, device: "torch.device") -> nn.Module:
    """Load weights saved by :func:`serialize_torch_module`, on ``device``.

    The output layers are sized from the saved weights, so a pipeline loads
    without calling ``initialize`` first; any other size disagreement between
    the config and the weights is reported by parameter name. Declared shapes
    are checked (from the archive's metadata, reading no tensor data) before
    any tensor is materialized, so a file cannot make loading allocate more
    than its own size.
    """
    try:
        msg = srsly.msgpack_loads(data)
        fmt = msg.get("format"), msg.get("format_version")
        state_bytes = msg["state"]
    except Exception as err:  # msgpack raises many types on garbage
        raise ValueError(f"lstm_tagger weights are corrupted or not in {MODEL_FORMAT} format: {err}") from err
    if fmt[0] == MODEL_FORMAT and fmt[1] == 1 and not _ACCEPT_VERSION_1.get():
        raise ValueError(
            "lstm_tagger weights are in the old format version 1, which has no checksum and no record of the "
            "label order, so a reordered label list would shift every tag silently: if this pipeline's labels "
            f"are the ones it was trained with, re-save it with `{RESAVE_COMMAND}`"
        )
    if fmt[0] != MODEL_FORMAT or fmt[1] not in (1, LEGACY_FORMAT_VERSION, MODEL_FORMAT_VERSION):
        raise ValueError(
            f"lstm_tagger weights have format {fmt[0]!r} version {fmt[1]!r}, but this version of "
            f"spacy-lstm-tagger reads {MODEL_FORMAT!r} versions {LEGACY_FORMAT_VERSION} and "
            f"{MODEL_FORMAT_VERSION} (version 1 after re-saving). "
            "Retrain the pipeline or install the spacy-lstm-tagger version it was saved with."
        )
    info: Dict[str, Any] = {}
    if fmt[1] >= 2:
        if not isinstance(state_bytes, bytes) or hashlib.sha256(state_bytes).hexdigest() != msg.get("sha256"):
            raise ValueError(
                "lstm_tagger weights are truncated or corrupted: the tensors (state) do not match their sha256 "
                "checksum (the file was damaged or edited after it was saved)"
            )
        info = _saved_info(msg, fmt[1])
    declared = _declared_tensors(state_bytes)
    if "output.weight" in declared:
        module.resize_output(declared["output.weight"].shape[0])
    for head in HEADS[1:]:
        module.resize_head(head, declared[f"{head}.weight"].shape[0] if f"{head}.weight" in declared else 0)
    if "vectors_proj.weight" in declared:
        module.resize_vectors(declared["vectors_proj.weight"].shape[1])
    if "upstream_proj.weight" in declared and getattr(module, "upstream_size", 0):
        module.resize_upstream(declared["upstream_proj.weight"].shape[1])
    expected = {name: tuple(t.shape) for name, t in module.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in declared.items()}
    if expected != found:
        diffs = [
            f"{name}: config gives {expected.get(name)}, weights have {found.get(name)}"
            for name in sorted(set(expected) | set(found))
            if expected.get(name) != found.get(name)
        ]
        raise ValueError(
            "The lstm_tagger model config does not match the saved weights "
            "(was config.cfg edited?): " + "; ".join(diffs)
        )
    _check_dtypes(declared, module.state_dict())
    try:
        state = torch.load(io.BytesIO(state_bytes), map_location=device, weights_only=True)
    except Exception as err:
        raise ValueError(f"lstm_tagger weights are truncated or corrupted: {err}") from err
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"lstm_tagger weights are corrupted: {name} has NaN or infinite values")
    module.load_state_dict(state)
    module.to(device)
    setattr(module, INFO_ATTR, {**info, "format_version": fmt[1]})
    return module


def _saved_info(msg: Mapping[str, Any], version: int) -> Dict[str, Any]:
    """The weights' info, checked: present in every version 2 and 3 file
    (without it the label order could not be confirmed), matching its own
    checksum in version 3, with an entry for every head."""
    info = msg.get("info")
    if not isinstance(info, dict) or not isinstance(info.get("labels"), dict):
        raise ValueError(
            f"lstm_tagger weights are corrupted: their info (the label lists the weights were trained with) is "
            f"{'missing' if info is None else 'not a map of labels'}; every version {version} file has it"
        )
    if version >= 3:
        if msg.get("info_sha256") != info_checksum(info):
            raise ValueError(
                "lstm_tagger weights are corrupted: their info (the label lists and switches the weights were "
                "trained with) does not match its sha256 checksum (the file was damaged or edited after it was "
                "saved; the tensors are intact)"
            )
        missing = [head for head in HEAD_OUTPUTS if not isinstance(info["labels"].get(head), dict)]
        if missing:
            raise ValueError(f"lstm_tagger weights are corrupted: their info has no labels for the {missing} heads")
    return info


def _declared_tensors(state_bytes: bytes) -> Dict[str, torch.Tensor]:
    """The state dict's tensors as declared by the archive (``meta`` tensors:
    names, shapes, dtypes, no data), after checking that the archive is
    ``torch.save``'s uncompressed zip and its tensors fit in its data."""
    try:
        with zipfile.ZipFile(io.BytesIO(state_bytes)) as archive:
            entries = archive.infolist()
    except Exception as err:
        raise ValueError(f"lstm_tagger weights are truncated or corrupted: {err}") from err
    for entry in entries:
        if entry.compress_type != zipfile.ZIP_STORED or entry.file_size != entry.compress_size:
            raise ValueError(
                f"lstm_tagger weights are corrupted: archive entry {entry.filename!r} is compressed "
                "(torch.save stores entries uncompressed; a re-packed file could expand without bound)"
            )
    data_bytes = sum(e.file_size for e in entries if "/data/" in e.filename)
    if data_bytes > len(state_bytes):
        raise ValueError("lstm_tagger weights are corrupted: the archive declares more data than it holds")
    try:
        declared = torch.load(io.BytesIO(state_bytes), map_location="meta", weights_only=True)
    except Exception as err:
        raise ValueError(f"lstm_tagger weights are truncated or corrupted: {err}") from err
    if not isinstance(declared, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in declared.items()
    ):
        raise ValueError("lstm_tagger weights are corrupted: the state is not a map of names to tensors")
    tensor_bytes = sum(t.numel() * t.element_size() for t in declared.values())
    if tensor_bytes > data_bytes + _ARCHIVE_SLACK_BYTES:
        raise ValueError(
            f"lstm_tagger weights are corrupted: the tensors declare {tensor_bytes} bytes, "
            f"but the archive holds {data_bytes}"
        )
    return declared


def _check_dtypes(declared: Mapping[str, torch.Tensor], module_state: Mapping[str, torch.Tensor]) -> None:
    """Float parameters must be saved as floats (``load_state_dict`` would
    silently convert integers); other tensors keep their exact dtype."""
    for name, tensor in declared.items():
        want = module_state[name]
        if want.is_floating_point() != tensor.is_floating_point() or (
            not want.is_floating_point() and want.dtype != tensor.dtype
        ):
            raise ValueError(
                f"lstm_tagger weights are corrupted: {name} is saved as {tensor.dtype}, "
                f"the model needs {want.dtype}"
            )


def check_loaded_weights(
    module: nn.Module,
    labels_by_head: Mapping[str, Any],
    *,
    built_attrs: Mapping[str, Any],
    loaded_attrs: Mapping[str, Any],
) -> None:
    """After a component loaded its cfg and weights: check they agree.

    labels_by_head: the component's label list per head (``HEAD_OUTPUTS``
        names; an absent or empty list means the head is off).
    built_attrs / loaded_attrs: the Thinc model's attrs as the config built
        them and as the model file set them.
    Then records the component's labels and switches as the module's info,
    so the next save stores them.
    """
    for head, labels in labels_by_head.items():
        _check_label_list(head, labels)
    built, loaded = model_switches(built_attrs), model_switches(loaded_attrs)
    info = getattr(module, INFO_ATTR, None) or {}
    saved_attrs = info.get("attrs") or {}
    for name, value in loaded.items():
        if name in built and built[name] != value:
            raise ValueError(
                f"the model file sets {name} = {value}, but config.cfg builds the model with "
                f"{name} = {built[name]}: the saved pipeline disagrees with itself"
            )
        if name in saved_attrs and saved_attrs[name] != value:
            raise ValueError(
                f"the model file sets {name} = {value}, but the weights were saved with "
                f"{name} = {saved_attrs[name]}"
            )
    if getattr(module, HEAD_OUTPUTS["tag"], None) is not None:  # uninitialized weights have no heads yet
        saved_labels = info.get("labels") or {}
        for head, layer_name in HEAD_OUTPUTS.items():
            labels = list(labels_by_head.get(head) or ())
            layer = getattr(module, layer_name, None)
            rows = 0 if layer is None else layer.out_features
            if rows != len(labels):
                raise ValueError(
                    f"the {head} head of the weights has {rows} output rows, but the component's "
                    f"cfg lists {len(labels)} {head} labels: the label list does not belong to these "
                    "weights (was the cfg edited?)"
                )
            saved = saved_labels.get(head)
            if saved is not None and saved.get("fingerprint") != label_fingerprint(labels):
                names = saved.get("names")
                if isinstance(names, list):
                    cause = f"the cfg was edited: {label_difference(names, labels)}"
                else:  # (version 2 stored only the fingerprint, without a checksum of its own)
                    cause = ("a label was edited, added, removed or moved in the cfg, or the weights' info was "
                             "damaged (version 2 files do not checksum it)")
                raise ValueError(
                    f"the component's {head} labels are not the ones the weights were trained with ({cause}): "
                    "every prediction would be shifted"
                )
    describe_weights(module, {h: list(v or ()) for h, v in labels_by_head.items()}, loaded)
    getattr(module, INFO_ATTR)["format_version"] = info.get("format_version", MODEL_FORMAT_VERSION)


def label_difference(saved: Sequence[str], labels: Sequence[str]) -> str:
    """What changed from the saved label list to the cfg's, in a few words."""
    added, removed = [x for x in labels if x not in saved], [x for x in saved if x not in labels]
    if added or removed:
        return (f"the weights have {_few(removed) or 'no other labels'}, "
                f"the cfg has {_few(added) or 'no other labels'} instead")
    i = next((i for i, (a, b) in enumerate(zip(saved, labels)) if a != b), None)
    if i is None:  # the same labels, one list repeating some
        return f"the weights have {len(saved)} labels, the cfg {len(labels)}"
    return f"label #{i} is {labels[i]!r} in the cfg, {saved[i]!r} in the weights (the order changed)"


def _few(names: List[str], n: int = 5) -> str:
    return ", ".join(map(repr, names[:n])) + (f" and {len(names) - n} more" if len(names) > n else "")


def _check_label_list(head: str, labels: Any) -> None:
    if labels is None:
        return
    if not isinstance(labels, (list, tuple)):
        raise ValueError(f"the component's {head} labels must be a list of strings, got {type(labels).__name__}")
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label:
            raise ValueError(f"the component's {head} label #{i} is {label!r}: labels must be non-empty strings")
    if len(set(labels)) != len(labels):
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        raise ValueError(f"the component's {head} labels repeat {duplicates}")
