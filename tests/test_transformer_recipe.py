"""The fine-tuned transformer recipe: the tagger's learn_rate_scale (its
weights step that many times the optimizer's rate, the transformer's stay at
it), and the transformer configs' asset check: a missing prepared model is one
line naming the command that prepares it, not spaCy's E050 or a Hugging Face
traceback. With the prepared all-MiniLM-L6-v2 (assets/pretrained), the
fine-tuned config updates the encoder and the frozen one does not."""
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.util import load_config
from thinc.api import SGD, fix_random_seed

from conftest import TINY_MODEL, TRAIN_DATA, make_examples

ROOT = Path(__file__).resolve().parent.parent
MINILM = ROOT / "assets" / "pretrained" / "all-MiniLM-L6-v2"
TRANSFORMER_CONFIGS = ["lstm_tagger_finetuned", "lstm_tagger_efficiency_transformer"]


def weights_after_one_step(scale: float):
    fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("lstm_tagger", config={"model": dict(TINY_MODEL), "learn_rate_scale": scale})
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    model = nlp.get_pipe("lstm_tagger").model
    before = [p.detach().clone() for node in model.walk() for shim in node.shims for p in shim._model.parameters()]
    nlp.update(examples, sgd=SGD(0.01))
    after = [p.detach().clone() for node in model.walk() for shim in node.shims for p in shim._model.parameters()]
    return before, after


def test_learn_rate_scale_multiplies_the_components_steps():
    before, one = weights_after_one_step(1.0)
    _, twenty = weights_after_one_step(20.0)
    step_one = sum(float((a - b).abs().sum()) for a, b in zip(one, before))
    step_twenty = sum(float((a - b).abs().sum()) for a, b in zip(twenty, before))
    assert step_one > 0
    assert step_twenty == pytest.approx(20 * step_one, rel=1e-3)


@pytest.mark.parametrize("scale", [0, -1.0])
def test_learn_rate_scale_must_be_positive(scale):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="learn_rate_scale must be > 0"):
        nlp.add_pipe("lstm_tagger", config={"learn_rate_scale": scale})


@pytest.mark.parametrize("name", TRANSFORMER_CONFIGS)
def test_missing_transformer_is_one_line_naming_the_command(name, tmp_path):
    pytest.importorskip("spacy_transformers", reason="the transformer configs need spacy-transformers")
    missing = tmp_path / "pretrained" / "all-MiniLM-L6-v2"
    config = load_config(ROOT / "configs" / f"{name}.cfg", overrides={"paths.transformer_model": str(missing)})
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    with pytest.raises(FileNotFoundError) as err:
        nlp.initialize(lambda: make_examples(nlp))
    message = str(err.value)
    assert "\n" not in message
    assert f"python scripts/prepare_pretrained.py {missing.parent.as_posix()} minilm" in message


def transformer_weights(nlp):
    shim = nlp.get_pipe("transformer").model.layers[0].shims[0]
    return numpy.concatenate([p.detach().numpy().ravel()[:2000] for p in shim._model.parameters()])


@pytest.mark.skipif(not (MINILM / "config.json").exists(),
                    reason="all-MiniLM-L6-v2 not prepared (python scripts/prepare_pretrained.py assets/pretrained minilm)")
@pytest.mark.parametrize("name,fine_tuned", [("lstm_tagger_finetuned", True),
                                             ("lstm_tagger_efficiency_transformer", False)])
def test_fine_tuned_config_updates_the_encoder_frozen_does_not(name, fine_tuned, monkeypatch, tmp_path):
    pytest.importorskip("spacy_transformers", reason="the transformer configs need spacy-transformers")
    from spacy.tokens import DocBin
    from spacy.training.initialize import init_nlp

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fix_random_seed(0)
    DocBin(docs=[eg.reference for eg in make_examples(spacy.blank("en"))]).to_disk(tmp_path / "train.spacy")
    config = load_config(ROOT / "configs" / f"{name}.cfg", overrides={
        "paths.transformer_model": str(MINILM), "paths.train": str(tmp_path / "train.spacy"),
        "paths.dev": str(tmp_path / "train.spacy")})
    config["components"]["lstm_tagger"]["model"].update({k: v for k, v in TINY_MODEL.items() if k != "depth"})
    nlp = init_nlp(config)  # as `spacy train` initializes it: frozen components excluded
    examples = make_examples(nlp)
    before = transformer_weights(nlp)
    optimizer = nlp.create_optimizer()
    optimizer.learn_rate = 1e-3
    frozen = config["training"]["frozen_components"]
    annotating = config["training"]["annotating_components"]
    for _ in range(3):
        nlp.update(examples, sgd=optimizer, exclude=frozen, annotates=annotating)
    changed = not numpy.allclose(before, transformer_weights(nlp))
    assert changed is fine_tuned
    tags = [t.tag_ for t in nlp(TRAIN_DATA[0][0])]
    assert len(tags) == 4 and all(tags)
