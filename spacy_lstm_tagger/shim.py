"""Thinc's ``PyTorchWrapper_v3``, built with a shim that fixes two Thinc 8.3
problems. Nothing here is specific to the tagger."""
import contextlib
from typing import Any, Callable, Dict, Iterator, Optional

import torch
from thinc.api import Model, PyTorchShim, torch2xp, xp2torch
from thinc.layers.pytorchwrapper import convert_pytorch_default_inputs, convert_pytorch_default_outputs
from thinc.layers.pytorchwrapper import forward as pytorch_forward


class InPlacePyTorchShim(PyTorchShim):
    """``PyTorchShim`` with two fixes, both covered by tests.

    * ``finish_update`` writes the optimizer's result into the existing torch
      parameters. Thinc's version rebinds ``param.data`` to a tensor made from
      the numpy view of the previous one, so every step keeps the previous
      buffers alive and memory grows by the size of the model per step.
    * ``use_params`` finds averages under the ``(shim.id, name)`` keys the
      Thinc optimizer uses; Thinc's version looks for ``"pytorch_{id}_{name}"``
      keys, so spaCy would silently evaluate and save ``model-best`` with the
      raw instead of the averaged weights.
    """

    predict_module: Optional[Callable[[torch.nn.Module], torch.nn.Module]] = None
    """When set (e.g. ``quantize.QuantizedInference``), ``predict`` runs the
    module it returns for the shim's module (training still runs the shim's).
    It may return the shim's module itself (``bfloat16 = "auto"`` on a CPU
    without native bf16): then ``predict`` is Thinc's own."""

    def predict(self, inputs: Any) -> Any:
        module = None if self.predict_module is None else self.predict_module(self._model)
        if module is None or module is self._model:
            return super().predict(inputs)
        module = module.eval()
        with torch.no_grad():
            return module(*inputs.args, **inputs.kwargs)

    def finish_update(self, optimizer: Any) -> None:
        for name, param in self._model.named_parameters():
            if param.grad is None:
                continue
            if not self._grad_scaler.found_inf:
                new_value, _ = optimizer(
                    (self.id, name), torch2xp(param.data), torch2xp(param.grad)
                )
                with torch.no_grad():
                    param.copy_(xp2torch(new_value, device=param.device))
            param.grad.zero_()
        self._grad_scaler.update()

    @contextlib.contextmanager
    def use_params(self, params: Dict) -> Iterator[None]:
        state = {
            name: xp2torch(params[(self.id, name)], device=self.device)
            for name, _ in self._model.named_parameters()
            if (self.id, name) in params
        }
        if not state:
            yield
            return
        backup = {k: v.clone() for k, v in self._model.state_dict().items()}
        self._model.load_state_dict(state, strict=False)
        try:
            yield
        finally:
            self._model.load_state_dict(backup)


def pytorch_wrapper(
    module: "torch.nn.Module",
    *,
    convert_inputs: Optional[Callable] = None,
    convert_outputs: Optional[Callable] = None,
    mixed_precision: bool = False,
    grad_scaler: Optional[Any] = None,
    device: Optional["torch.device"] = None,
    serialize_model: Optional[Callable[[Any], bytes]] = None,
    deserialize_model: Optional[Callable[[Any, bytes, "torch.device"], Any]] = None,
) -> Model:
    """What ``thinc.api.PyTorchWrapper_v3`` builds (same forward, attrs and
    dims), with :class:`InPlacePyTorchShim` as its shim."""
    return Model(
        "pytorch",
        pytorch_forward,
        attrs={
            "convert_inputs": convert_inputs or convert_pytorch_default_inputs,
            "convert_outputs": convert_outputs or convert_pytorch_default_outputs,
        },
        shims=[
            InPlacePyTorchShim(
                module,
                mixed_precision=mixed_precision,
                grad_scaler=grad_scaler,
                device=device,
                serialize_model=serialize_model,
                deserialize_model=deserialize_model,
            )
        ],
        dims={"nI": None, "nO": None},
    )
