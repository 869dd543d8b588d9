"""What a logged model takes and returns: through `mlflow.pyfunc.load_model`, and over HTTP from
`mlflow models serve` (`make serve`).

A regression or classification model takes float32 inputs shaped (samples, steps, features) and
returns values in original units, or class probabilities (the signature's tensor). A language model
takes text: each input string is a prime, and the answer is the text the model writes after it,
`length` characters drawn at `temperature` from the seed `seed` (request params with defaults, in the
signature), exactly what `python -m src.sample` prints after the prime. Its vocabulary travels inside
the model, so a client needs nothing but strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from src.tasks.language_model import SAMPLE_PRIME_LENGTH, LanguageModel

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

    from src.predictor import Predictor, SavedPredictor

# A request cannot hold the server for long: one character is one step of the network, and a request's
# steps are its primes' characters plus `length` for each prime (about 15 s on one core of a laptop).
MAX_LENGTH = 10_000
MAX_STEPS = 100_000
# Above this the next character is drawn almost uniformly: noise, not the model.
MAX_TEMPERATURE = 100.0
# The defaults of a request's params, and of `python -m src.sample`.
TEXT_PARAMS: dict[str, Any] = {"length": 200, "temperature": 0.8, "seed": 0}


@dataclass(frozen=True)
class ModelInterface:
    """The signature and input example a model is logged with."""

    input_example: Any
    signature: ModelSignature


def writes_text(predictor: Predictor | SavedPredictor) -> bool:
    return isinstance(predictor.task, LanguageModel)


def interface(saved: SavedPredictor) -> ModelInterface:
    """From the saved predictor's example (a few rows of test inputs) and its outputs for them: the
    model's signature and its input example (for a language model, the text of the first row's start,
    with the text params)."""
    from mlflow.models import infer_signature

    x = saved.example
    if not writes_text(saved):
        return ModelInterface(x, infer_signature(x, saved.example_outputs))
    from src.data.chars import decode

    prime = [decode(x[0, :SAMPLE_PRIME_LENGTH, 0].astype(np.int64), saved.classes)]
    return ModelInterface(prime, infer_signature(prime, ["text"], params=TEXT_PARAMS))


def predict(predictor: Predictor, model_input: Any, params: dict[str, Any] | None = None) -> Any:
    """What the pyfunc model answers (see the module's docstring)."""
    if not writes_text(predictor):
        return predictor.predict(np.asarray(model_input, dtype=np.float32))
    return write_text(predictor, primes(model_input), {**TEXT_PARAMS, **(params or {})})


def primes(model_input: Any) -> list[str]:
    """The strings of a request: MLflow hands them over as a one-column DataFrame."""
    import pandas as pd

    values = model_input.iloc[:, 0] if isinstance(model_input, pd.DataFrame) else np.ravel(model_input)
    return [str(value) for value in values]


def text_params_problems(length: int, temperature: float, seed: int) -> list[tuple[str, object, str]]:
    """(name, value, what it must be) for each text param out of range: one rule for a served model's
    requests and for `python -m src.sample`. The seed's range is trainer.seed's."""
    return [
        (name, value, rule)
        for failed, name, value, rule in [
            (not 0 <= length <= MAX_LENGTH, "length", length, f"must be in [0, {MAX_LENGTH}]"),
            (
                not 0 < temperature <= MAX_TEMPERATURE,
                "temperature",
                temperature,
                f"must be in (0, {MAX_TEMPERATURE:g}]",
            ),
            (not 0 <= seed < 2**32, "seed", seed, "must be in [0, 2**32)"),
        ]
        if failed
    ]


def steps_problems(prompts: list[str], length: int) -> list[str]:
    """The request's steps of the network over MAX_STEPS (a 2,000,000-character prime took 18 s, 2000
    primes of 10000 characters would take most of an hour): one rule for a served model and src.sample."""
    characters = sum(len(prompt) for prompt in prompts)
    steps = characters + len(prompts) * max(length, 0)
    if steps <= MAX_STEPS:
        return []
    return [
        f"the primes' {characters} characters plus length={length} for each of {len(prompts)} prime(s) make "
        f"{steps} steps of the network, more than {MAX_STEPS} a request may take"
    ]


def write_text(predictor: Predictor, prompts: list[str], params: dict[str, Any]) -> list[str]:
    from mlflow.exceptions import MlflowException

    from src.tasks.language_model import generate_text

    length, temperature, seed = int(params["length"]), float(params["temperature"]), int(params["seed"])
    problems = [f"{name}={value} {rule}" for name, value, rule in text_params_problems(length, temperature, seed)]
    if any(not prompt for prompt in prompts):
        problems.append("every prime must be a non-empty string")
    problems += steps_problems(prompts, length)
    if problems:
        raise MlflowException.invalid_parameter_value("; ".join(problems))
    return [generate_text(predictor, prompt, length, temperature, np.random.default_rng(seed)) for prompt in prompts]
