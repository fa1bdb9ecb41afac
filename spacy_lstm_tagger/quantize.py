"""Opt-in dynamic int8 quantization of the tagger for CPU inference.

The float module stays the source of truth (training, ``use_params`` and
serialization see only float weights, so a saved pipeline is the same with
or without quantization). At inference the shim runs an int8 copy made
with ``torch.ao.quantization.quantize_dynamic``: weights of the LSTMs and
linear layers in int8, activations quantized on the fly. The copy is
rebuilt whenever the float weights change.

The inference path runs each direction of each BiLSTM layer on its own
(see ``pytorch_model.bilstm_padded``), so a bidirectional ``nn.LSTM`` is
quantized as one unidirectional quantized LSTM per layer and direction.
"""
import copy
import warnings
from typing import List, Optional, Tuple

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
                single = nn.LSTM(weight_ih.shape[1], lstm.hidden_size, batch_first=True, bias=lstm.bias)
                with torch.no_grad():
                    for name in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if lstm.bias else ()):
                        getattr(single, f"{name}_l0").copy_(getattr(lstm, f"{name}_l{layer}{suffix}"))
                directions.append(_quantize_dynamic(nn.Sequential(single.eval()), {nn.LSTM})[0])
        self.directions = nn.ModuleList(directions)

    def padded(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``pytorch_model.bilstm_padded`` with the int8 LSTMs: the backward
        direction runs on each sequence reversed within its length; positions
        past a sequence's length are zero."""
        n_seqs, length, _ = x.shape
        steps = torch.arange(length).unsqueeze(0)
        ends = lengths.unsqueeze(1)
        reverse = torch.where(steps < ends, ends - 1 - steps, steps).unsqueeze(-1).to(x.device)
        for layer in range(self.num_layers):
            forward, backward = self.directions[2 * layer], self.directions[2 * layer + 1]
            reversed_x = x.gather(1, reverse.expand(-1, -1, x.shape[2]))
            y_backward = backward(reversed_x)[0]
            x = torch.cat([forward(x)[0], y_backward.gather(1, reverse.expand(-1, -1, y_backward.shape[2]))], dim=-1)
        return x * (steps < ends).unsqueeze(-1).to(x.device)


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


class QuantizedInference:
    """Holds the int8 copy of a float module, rebuilt when the float weights change."""

    def __init__(self) -> None:
        self._fingerprint: Optional[Tuple] = None
        self._quantized: Optional[WordCharBiLSTMTagger] = None

    def __call__(self, module: WordCharBiLSTMTagger) -> WordCharBiLSTMTagger:
        fingerprint = (id(module), weights_fingerprint(module.parameters()))
        if self._quantized is None or fingerprint != self._fingerprint:
            self._quantized = quantized_copy(module)
            self._fingerprint = fingerprint
        return self._quantized

    def __getstate__(self):
        return {}  # rebuilt on first use after unpickling

    def __setstate__(self, state) -> None:
        self.__init__()
