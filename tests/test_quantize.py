"""Opt-in reduced-precision inference, int8 dynamic quantization (model
setting ``quantize``) and bfloat16 (``bfloat16``): close to the float model,
saved as float weights with the switch in the config, rebuilt when the
weights change."""
import warnings

import numpy
import pytest
import spacy
import torch
from torch import nn

from spacy_lstm_tagger import quantize
from spacy_lstm_tagger.model import get_torch_module
from spacy_lstm_tagger.pytorch_model import bilstm_padded
from spacy_lstm_tagger.quantize import DynamicInt8BiLSTM, quantized_copy

from conftest import make_examples, train_tiny


@pytest.mark.parametrize("depth", [1, 2])
def test_int8_bilstm_is_close_to_the_float_one(depth):
    torch.manual_seed(0)
    lstm = nn.LSTM(12, 10, num_layers=depth, batch_first=True, bidirectional=True).eval()
    x = torch.randn(5, 9, 12)
    lengths = torch.tensor([9, 3, 7, 1, 9])
    with torch.inference_mode():
        expected = bilstm_padded(lstm, x, lengths)
        quantized = bilstm_padded(DynamicInt8BiLSTM(lstm), x, lengths)
    assert quantized.shape == expected.shape
    assert not torch.equal(quantized, expected)  # really int8, not the float kernel
    torch.testing.assert_close(quantized, expected, atol=0.05, rtol=0.0)
    padding = torch.arange(9).unsqueeze(0) >= lengths.unsqueeze(1)
    assert (quantized[padding] == 0).all()


def test_int8_bilstm_reverse_direction_ignores_padding():
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 3, batch_first=True, bidirectional=True).eval()
    quantized = DynamicInt8BiLSTM(lstm)
    x = torch.randn(1, 6, 4)
    with torch.inference_mode():
        short = bilstm_padded(quantized, x[:, :4], torch.tensor([4]))
        # zero padding leaves the dynamic quantization range (min/max of the input) unchanged
        padded = bilstm_padded(quantized, torch.cat([x[:, :4], torch.zeros(1, 2, 4)], dim=1), torch.tensor([4]))
        # the per-direction LSTMs are time-major
        run = lambda direction, inputs: quantized.directions[direction](inputs.transpose(0, 1))[0].transpose(0, 1)  # noqa: E731
        reads_padding = torch.cat([run(0, x[:, :4]), run(1, torch.cat([torch.zeros(1, 2, 4), x[:, :4].flip(1)], dim=1))[:, 2:].flip(1)], dim=-1)
    torch.testing.assert_close(padded[:, :4], short)
    assert not torch.allclose(reads_padding, short, atol=1e-3)  # the test can tell


def reduced_precision_nlp(nlp, tmp_path, **settings):
    """``nlp`` saved and loaded again with the model ``settings`` (quantize, bfloat16)."""
    nlp.to_disk(tmp_path / "float")
    return spacy.load(tmp_path / "float", config={"components": {"lstm_tagger": {"model": settings}}})


def quantized_nlp(nlp, tmp_path, quantize=True):
    return reduced_precision_nlp(nlp, tmp_path, quantize=quantize)


def test_quantized_pipeline_tags_like_the_float_one(tmp_path):
    nlp = train_tiny()
    docs = [eg.predicted for eg in make_examples(nlp)]
    qnlp = quantized_nlp(nlp, tmp_path)
    expected = nlp.get_pipe("lstm_tagger").model.predict(docs)
    got = qnlp.get_pipe("lstm_tagger").model.predict(docs)
    shim = qnlp.get_pipe("lstm_tagger").model.layers[0].shims[0]
    assert type(shim.predict_module(shim._model).lstm) is DynamicInt8BiLSTM
    for a, b in zip(expected, got):
        assert a.shape == b.shape
        numpy.testing.assert_allclose(a, b, atol=0.05)
        assert (a.argmax(axis=1) == b.argmax(axis=1)).all()
    assert [t.tag_ for d in qnlp.pipe(eg.reference.text for eg in make_examples(nlp)) for t in d] == [
        t.tag_ for d in nlp.pipe(eg.reference.text for eg in make_examples(nlp)) for t in d
    ]


def test_quantize_setting_is_saved_and_weights_stay_float(tmp_path):
    nlp = train_tiny()
    docs = [eg.predicted for eg in make_examples(nlp)]
    qnlp = quantized_nlp(nlp, tmp_path)
    before = qnlp.get_pipe("lstm_tagger").model.predict(docs)
    qnlp.to_disk(tmp_path / "quantized")
    loaded = spacy.load(tmp_path / "quantized")
    assert loaded.config["components"]["lstm_tagger"]["model"]["quantize"] is True
    for a, b in zip(before, loaded.get_pipe("lstm_tagger").model.predict(docs)):
        numpy.testing.assert_array_equal(a, b)
    # the saved weights are the float ones: switching quantization off gives the float model back
    state = get_torch_module(loaded.get_pipe("lstm_tagger").model).state_dict()
    assert all(t.dtype == torch.float32 for t in state.values())
    unquantized = spacy.load(tmp_path / "quantized", config={"components": {"lstm_tagger": {"model": {"quantize": False}}}})
    for a, b in zip(nlp.get_pipe("lstm_tagger").model.predict(docs), unquantized.get_pipe("lstm_tagger").model.predict(docs)):
        numpy.testing.assert_allclose(a, b, atol=1e-6)


def test_int8_copy_is_rebuilt_when_weights_change(tmp_path):
    nlp = train_tiny(n_iter=5)
    qnlp = quantized_nlp(nlp, tmp_path)
    examples = make_examples(qnlp)
    docs = [eg.predicted for eg in examples]
    model = qnlp.get_pipe("lstm_tagger").model
    model.predict(docs)
    optimizer = qnlp.resume_training()
    qnlp.update(examples, sgd=optimizer)
    with torch.no_grad():
        fresh = quantized_copy(get_torch_module(model))
    shim = model.layers[0].shims[0]
    stale_output = shim.predict_module.current.output
    got = model.predict(docs)
    assert shim.predict_module.current.output is not stale_output
    expected_weight = fresh.output.weight().dequantize()
    torch.testing.assert_close(shim.predict_module.current.output.weight().dequantize(), expected_weight)
    assert len(got) == len(docs)


def test_bfloat16_pipeline_tags_like_the_float_one(tmp_path):
    nlp = train_tiny()
    examples = make_examples(nlp)
    docs = [eg.predicted for eg in examples]
    bnlp = reduced_precision_nlp(nlp, tmp_path, bfloat16=True)
    shim = bnlp.get_pipe("lstm_tagger").model.layers[0].shims[0]
    expected = nlp.get_pipe("lstm_tagger").model.predict(docs)
    got = bnlp.get_pipe("lstm_tagger").model.predict(docs)
    assert shim.predict_module.current.module.output.weight.dtype == torch.bfloat16
    for a, b in zip(expected, got):
        assert a.dtype == b.dtype == numpy.float32 and a.shape == b.shape
        assert not numpy.array_equal(a, b)  # really bf16, not the float32 module
        numpy.testing.assert_allclose(a, b, atol=0.05)
        assert (a.argmax(axis=1) == b.argmax(axis=1)).mean() >= 0.9
    # the float module and its weights are untouched; saving keeps float32 and the switch
    assert all(t.dtype == torch.float32 for t in get_torch_module(bnlp.get_pipe("lstm_tagger").model).state_dict().values())
    bnlp.to_disk(tmp_path / "bf16")
    loaded = spacy.load(tmp_path / "bf16")
    assert loaded.config["components"]["lstm_tagger"]["model"]["bfloat16"] is True
    for a, b in zip(got, loaded.get_pipe("lstm_tagger").model.predict(docs)):
        numpy.testing.assert_array_equal(a, b)


def test_bfloat16_copy_is_rebuilt_when_weights_change(tmp_path):
    nlp = train_tiny(n_iter=5)
    bnlp = reduced_precision_nlp(nlp, tmp_path, bfloat16=True)
    examples = make_examples(bnlp)
    docs = [eg.predicted for eg in examples]
    model = bnlp.get_pipe("lstm_tagger").model
    model.predict(docs)
    shim = model.layers[0].shims[0]
    stale = shim.predict_module.current
    bnlp.update(examples, sgd=bnlp.resume_training())
    model.predict(docs)
    assert shim.predict_module.current is not stale
    float_weight = get_torch_module(model).output.weight
    torch.testing.assert_close(shim.predict_module.current.module.output.weight, float_weight.to(torch.bfloat16))


def test_int8_and_bfloat16_together_is_a_clear_error():
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="at most one"):
        nlp.add_pipe("lstm_tagger", config={"model": {
            "@architectures": "spacy_lstm_tagger.WordCharBiLSTM.v2", "quantize": True, "bfloat16": True}})


@pytest.mark.parametrize("machine,avx512_bf16,amx,onednn,expected", [
    ("x86_64", False, False, True, False),  # AVX-512 without bf16 (Skylake-SP): oneDNN emulates it
    ("x86_64", True, False, True, True),  # avx512_bf16 (Cooper Lake, Zen 4)
    ("AMD64", False, True, True, True),  # AMX (Sapphire Rapids)
    ("x86_64", False, False, False, False),  # AVX2 only
    ("aarch64", False, False, True, True),  # Arm: oneDNN's own check
    ("aarch64", False, False, False, False),
])
def test_native_bf16_needs_the_bf16_instructions(monkeypatch, machine, avx512_bf16, amx, onednn, expected):
    """Only real bf16 hardware counts as native: oneDNN's check also says yes
    for any AVX-512 CPU, where bf16 runs emulated and slower than float32."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(quantize.platform, "machine", lambda: machine)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: onednn, raising=False)
    assert quantize.native_bf16(torch.device("cpu")) is expected


@pytest.mark.parametrize("variable,cap,expected", [
    ("ONEDNN_MAX_CPU_ISA", "AVX2", False),
    ("ONEDNN_MAX_CPU_ISA", "avx512_core_vnni", False),
    ("DNNL_MAX_CPU_ISA", "AVX512_CORE", False),
    ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16", True),
    ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX", True),
    ("ONEDNN_MAX_CPU_ISA", "ALL", True),
])
def test_a_onednn_isa_cap_below_bf16_is_not_native(monkeypatch, variable, cap, expected):
    """A CPU with AMX whose oneDNN is capped below AVX512_CORE_BF16 (e.g. to
    reproduce an older CPU's timings) emulates bf16: "auto" stays float32."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, cap)
    monkeypatch.setattr(quantize.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert quantize.native_bf16(torch.device("cpu")) is expected


@pytest.mark.parametrize("native", [True, False])
def test_bfloat16_auto_follows_the_device(tmp_path, monkeypatch, native):
    """``bfloat16 = "auto"``: the bfloat16 copy where the CPU runs bf16
    natively, else the float module itself (the float32 tags, no warning);
    saved and loaded with the switch."""
    monkeypatch.setattr(quantize, "_native_bf16", lambda: native)
    nlp = train_tiny()
    docs = [eg.predicted for eg in make_examples(nlp)]
    expected = nlp.get_pipe("lstm_tagger").model.predict(docs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "emulated bf16" warning either way
        anlp = reduced_precision_nlp(nlp, tmp_path, bfloat16="auto")
        model = anlp.get_pipe("lstm_tagger").model
        got = model.predict(docs)
    shim = model.layers[0].shims[0]
    module = get_torch_module(model)
    if native:
        assert shim.predict_module.current.module.output.weight.dtype == torch.bfloat16
        assert not all(numpy.array_equal(a, b) for a, b in zip(expected, got))
    else:
        assert shim.predict_module.current is module
        for a, b in zip(expected, got):
            numpy.testing.assert_array_equal(a, b)
    assert module.training  # predict left the float module as Thinc leaves it
    anlp.to_disk(tmp_path / "auto")
    assert spacy.load(tmp_path / "auto").config["components"]["lstm_tagger"]["model"]["bfloat16"] == "auto"


@pytest.mark.parametrize(
    "value,message", [("yes please", 'true or false or "auto"'), ("AUTO", 'true or false or "auto"'), (2, "is not")]
)
def test_bfloat16_takes_true_false_or_auto(value, message):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match=f"bfloat16.*{message}"):
        nlp.add_pipe("lstm_tagger", config={"model": {
            "@architectures": "spacy_lstm_tagger.WordCharBiLSTM.v2", "bfloat16": value}})


def test_bfloat16_auto_stays_float_off_the_cpu(monkeypatch):
    """On a GPU (here any non-CPU device) "auto" runs the float module."""
    monkeypatch.setattr(quantize, "native_bf16", lambda device: True)
    module = nn.Linear(2, 2)
    assert isinstance(quantize.bfloat16_where_native(module), quantize.BFloat16Module)
    meta = nn.Linear(2, 2, device="meta")
    assert quantize.bfloat16_where_native(meta) is meta


@pytest.mark.parametrize("native", [True, False])
def test_int8_wins_over_bfloat16_auto(monkeypatch, native):
    """``bfloat16 = "auto"`` is the shipped configs' default, so asking for
    ``quantize = true`` on top of it runs int8 wherever the model runs."""
    monkeypatch.setattr(quantize, "_native_bf16", lambda: native)
    nlp = spacy.blank("en")
    pipe = nlp.add_pipe("lstm_tagger", config={"model": {
        "@architectures": "spacy_lstm_tagger.WordCharBiLSTM.v2", "quantize": True, "bfloat16": "auto"}})
    assert isinstance(pipe.model.layers[0].shims[0].predict_module, quantize.QuantizedInference)


@pytest.mark.parametrize("factory", ["lstm_tagger", "lstm_joint_tagger"])
def test_add_pipe_default_is_bfloat16_auto(factory):
    nlp = spacy.blank("en")
    nlp.add_pipe(factory)
    assert nlp.config["components"][factory]["model"]["bfloat16"] == "auto"
    assert isinstance(nlp.get_pipe(factory).model.layers[0].shims[0].predict_module,
                      quantize.AutoBFloat16Inference)
