"""The learning-rate schedule of the shipped configs: thinc's warm-up and
linear decay, with the warm-up capped to a fraction of the run.

The configs tie ``total_steps`` to ``${training.max_steps}``, so a run made
shorter on the command line (``--training.max_steps 200``) decays to zero at
its own last step; the cap keeps such a run from spending all of it in
warm-up. At the shipped lengths the cap does not bind and the schedule is
exactly ``warmup_linear.v1``.

``nlp.create_optimizer()`` (and so ``nlp.initialize()`` without ``sgd`` and
``nlp.resume_training()``) resolves ``[training.optimizer]`` without
interpolating the config, so ``total_steps`` arrives as the text
``${training.max_steps}``: there is no run length to decay over, and the
schedule holds ``initial_rate`` (with a warning). ``spacy train`` interpolates
and gets the schedule.
"""
import itertools
import warnings
from typing import Iterable, Union

from thinc.api import registry
from thinc.schedules import warmup_linear


@registry.schedules("spacy_lstm_tagger.warmup_linear.v1")
def warmup_linear_capped(
    initial_rate: float, warmup_steps: int, total_steps: Union[int, str], max_warmup_fraction: float = 0.1
) -> Iterable[float]:
    """``warmup_linear.v1(initial_rate, min(warmup_steps, max_warmup_fraction
    * total_steps), total_steps)``."""
    if isinstance(total_steps, str):
        if not total_steps.startswith("${"):
            raise ValueError(f"total_steps must be a number of steps, got {total_steps!r}")
        warnings.warn(
            f"[spacy_lstm_tagger.warmup_linear.v1] total_steps is {total_steps!r}, not interpolated (as "
            "nlp.create_optimizer() and nlp.resume_training() resolve the optimizer): the learning rate "
            f"stays at initial_rate = {initial_rate}. `spacy train` interpolates it and gets the schedule."
        )
        return itertools.repeat(initial_rate)
    if total_steps < 1:
        raise ValueError(
            f"total_steps must be at least 1, got {total_steps}: the shipped configs take it from "
            "[training] max_steps, which a warm-up and decay schedule needs set (not 0)"
        )
    if not 0.0 <= max_warmup_fraction <= 1.0:
        raise ValueError(f"max_warmup_fraction must be between 0 and 1, got {max_warmup_fraction}")
    warmup = min(warmup_steps, int(max_warmup_fraction * total_steps))
    return warmup_linear(initial_rate, warmup, total_steps)
