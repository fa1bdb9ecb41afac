"""Opt-in reduced-precision inference on CPU: int8 dynamic quantization
(model setting ``quantize``) and bfloat16 (``bfloat16``).

The float module stays the source of truth (training, ``use_params`` and
serialization see only float32 weights, so a saved pipeline is the same with
or without either setting). At inference the shim runs a copy: for int8 one
made with ``torch.ao.quantization.quantize_dynamic`` (weights of the LSTMs
and linear layers in int8, activations quantized on the fly), for bfloat16
the whole module cast to bfloat16 (oneDNN's bf16 LSTM kernels, about 2x
faster where the CPU has avx512_bf16 or AMX). The copy is rebuilt whenever
the float weights change. ``bfloat16 = "auto"`` (the shipped configs' and
``add_pipe``'s default) makes the bfloat16 copy only on a CPU that runs bf16
natively and runs the float module elsewhere (GPUs included), so one config
can go to every machine (fast where bf16 is native, float32 elsewhere).

The inference path runs each direction of each BiLSTM layer on its own
(see ``pytorch_model.bilstm_directions``), so a bidirectional ``nn.LSTM`` is
quantized as one unidirectional quantized LSTM per layer and direction.
"""
import copy
import os
import platform
import warnings
from typing import Any, Callable, List, Optional, Tuple

import torch
from torch import nn

from .char_cache import weights_fingerprint
from .pytorch_model import HEADS, WordCharBiLSTMTagger


def _quantize_dynamic(module: nn.Module, types) -> nn.Module:
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as err:  # a torch build without eager-mode quantization
        raise RuntimeError(f"quantize = true needs torch.ao.quantization.quantize_dynamic: {err}") from err
    with warnings.catch_warnings():
        # torch >= 2.10 marks eager-mode quantization as deprecated on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(module, types, dtype=torch.qint8)


class DynamicInt8BiLSTM(nn.Module):
    """A bidirectional ``nn.LSTM`` for inference with int8 weights: one
    dynamically quantized unidirectional LSTM per layer and direction."""

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        if not (lstm.bidirectional and lstm.batch_first):
            raise ValueError("DynamicInt8BiLSTM expects a bidirectional, batch_first nn.LSTM")
        self.hidden_size = lstm.hidden_size
        self.num_layers = lstm.num_layers
        directions: List[nn.Module] = []
        for layer in range(lstm.num_layers):
            for suffix in ("", "_reverse"):
                weight_ih = getattr(lstm, f"weight_ih_l{layer}{suffix}")
                # time-major, as pytorch_model.bilstm_directions runs them
                single = nn.LSTM(weight_ih.shape[1], lstm.hidden_size, bias=lstm.bias)
                with torch.no_grad():
                    for name in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if lstm.bias else ()):
                        getattr(single, f"{name}_l0").copy_(getattr(lstm, f"{name}_l{layer}{suffix}"))
                directions.append(_quantize_dynamic(nn.Sequential(single.eval()), {nn.LSTM})[0])
        self.directions = nn.ModuleList(directions)

    def direction(self, layer: int, reverse: bool, x: torch.Tensor) -> torch.Tensor:
        """One direction of one layer over time-major ``x`` (what
        ``pytorch_model.bilstm_directions`` runs; ``pytorch_model.bilstm_padded``
        takes this module as it takes an ``nn.LSTM``)."""
        return self.directions[2 * layer + int(reverse)](x)[0]


def quantized_copy(module: WordCharBiLSTMTagger) -> WordCharBiLSTMTagger:
    """An inference-only copy of ``module`` with an int8 sentence BiLSTM and
    linear layers (the character BiLSTM, the embeddings and the CRF's
    transition scores stay float)."""
    if next(module.parameters()).device.type != "cpu":
        raise ValueError("quantize = true is for CPU inference; the model is on " + str(next(module.parameters()).device))
    # a shallow copy: the float parts (embeddings, the character BiLSTM and
    # its cache: small matrices, int8 made it slower, microbench.py kernels)
    # are shared with the float module; only the replaced layers are new
    quantized = copy.copy(module)
    quantized._modules = dict(module._modules)
    quantized._parameters = dict(module._parameters)
    quantized._buffers = dict(module._buffers)
    quantized.lstm = DynamicInt8BiLSTM(module.lstm)
    for name in HEADS + ("vectors_proj",):
        layer = getattr(module, name, None)
        if isinstance(layer, nn.Linear):
            setattr(quantized, name, _quantize_dynamic(nn.Sequential(layer), {nn.Linear})[0])
    return quantized


class InferenceCopy:
    """Holds an inference-only copy of a float module, made by the subclass's
    ``make`` and rebuilt when the float weights (or its predicted heads) change."""

    make: Callable[[WordCharBiLSTMTagger], nn.Module]

    def __init__(self) -> None:
        self._fingerprint: Optional[Tuple] = None
        self._copy: Optional[nn.Module] = None

    def __call__(self, module: WordCharBiLSTMTagger) -> nn.Module:
        # the heads it scores are copied with it: a change rebuilds it too
        fingerprint = (id(module), module.predicted_heads, weights_fingerprint(module.parameters()))
        if self._copy is None or fingerprint != self._fingerprint:
            self._copy = self.make(module)
            self._fingerprint = fingerprint
        return self._copy

    @property
    def current(self) -> Optional[nn.Module]:
        """The copy made last (None before the first predict)."""
        return self._copy

    def __getstate__(self):
        return {}  # the copy is rebuilt on first use after unpickling

    def __setstate__(self, state) -> None:
        self.__init__()


class QuantizedInference(InferenceCopy):
    """The int8 copy (:func:`quantized_copy`) of the shim's module."""

    make = staticmethod(quantized_copy)


class BFloat16Module(nn.Module):
    """A bfloat16 copy of a tagger module for inference: float inputs
    (static vectors, upstream features) are cast to bfloat16 on the way in,
    the scores back to float32 on the way out."""

    def __init__(self, module: WordCharBiLSTMTagger) -> None:
        super().__init__()
        # deepcopy: the float module and its character cache stay as they are
        # (the copy's cache starts empty and holds bfloat16 encodings)
        self.module = copy.deepcopy(module).to(torch.bfloat16).eval()

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        def cast(value: Any) -> Any:
            return value.to(torch.bfloat16) if isinstance(value, torch.Tensor) and value.is_floating_point() else value

        return self.module(*map(cast, args), **{k: cast(v) for k, v in kwargs.items()}).float()


def bfloat16_copy(module: WordCharBiLSTMTagger) -> BFloat16Module:
    """The bfloat16 inference copy of ``module``; warns once where the CPU
    has no native bf16 (oneDNN then emulates it, several times slower than
    float32)."""
    global _warned_no_native_bf16
    device = next(module.parameters()).device
    if device.type == "cpu" and not native_bf16(device) and not _warned_no_native_bf16:
        warnings.warn(
            "bfloat16 = true: this CPU has no native bfloat16 (avx512_bf16 or AMX, not capped by "
            "ONEDNN_MAX_CPU_ISA), so bf16 inference runs emulated and slower than float32; "
            "set bfloat16 = false here",
            stacklevel=2,
        )
        _warned_no_native_bf16 = True
    return BFloat16Module(module)


_warned_no_native_bf16 = False


# oneDNN ISA caps (``ONEDNN_MAX_CPU_ISA``) below ``AVX512_CORE_BF16``: with
# one of these set, oneDNN does not use the bf16 instructions even where the
# CPU has them, and bf16 runs emulated.
_ONEDNN_CAPS_WITHOUT_BF16 = frozenset(
    {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}
)


def _onednn_isa_cap() -> str:
    """The ISA cap the user set for oneDNN, upper-cased ('' when none)."""
    return (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()


def _native_bf16() -> bool:
    """On x86, the bf16 instructions themselves (avx512_bf16 or AMX), unless
    ``ONEDNN_MAX_CPU_ISA`` caps oneDNN below them: oneDNN's own check
    (``_is_mkldnn_bf16_supported``) also says yes for any AVX-512 CPU (e.g.
    Skylake-SP), where it emulates bf16 several times slower than float32.
    Elsewhere (e.g. Arm's bf16 extension), oneDNN's check."""
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        if _onednn_isa_cap() in _ONEDNN_CAPS_WITHOUT_BF16:
            return False
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 natively: a CPU with avx512_bf16 or
    AMX that oneDNN may use (:func:`_native_bf16`), a CUDA GPU that supports
    bf16."""
    if device.type == "cpu":
        return _native_bf16()
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return False


class BFloat16Inference(InferenceCopy):
    """The bfloat16 copy (:func:`bfloat16_copy`) of the shim's module."""

    make = staticmethod(bfloat16_copy)


def bfloat16_where_native(module: WordCharBiLSTMTagger) -> nn.Module:
    """``bfloat16 = "auto"`` (the shipped configs' default): the bfloat16 copy
    on a CPU that runs bf16 natively, else the float module itself (no copy,
    no warning). On a GPU it stays float32: there the small LSTMs are bound by
    per-step kernel launches rather than arithmetic, and bf16 RNN kernels
    depend on the CUDA/cuDNN build; ``bfloat16 = true`` opts in."""
    device = next(module.parameters()).device
    if device.type == "cpu" and native_bf16(device):
        return BFloat16Module(module)
    return module


class AutoBFloat16Inference(InferenceCopy):
    """``bfloat16 = "auto"`` (:func:`bfloat16_where_native`); decided again
    whenever the copy is rebuilt, e.g. after the model moved to a GPU."""

    make = staticmethod(bfloat16_where_native)
