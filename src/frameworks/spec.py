"""The network a backend builds: its shape and its head, as plain data saved beside the weights.

Weights travel between frameworks in one canonical layout: PyTorch's state_dict names and shapes.
For layer k (0-based) of a cell with G gates (rnn 1, lstm 4, gru 3) and hidden size H:

  recurrent.weight_ih_l{k}  (G*H, inputs)   inputs = num_features for k = 0, else H
  recurrent.weight_hh_l{k}  (G*H, H)
  recurrent.bias_ih_l{k}    (G*H,)
  recurrent.bias_hh_l{k}    (G*H,)
  head.weight               (num_outputs, H)
  head.bias                 (num_outputs,)

Gate order along the G*H axis: LSTM (i, f, g, o); GRU (r, z, n), reset-after:
n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),  h' = (1 - z) * n + z * h.

The `Head` adds no weights; it says what the same weights mean, and each task (src/tasks/) brings
its own: which loss trains them (MSE, or cross-entropy over the outputs), whether the inputs are token
ids one-hot encoded over num_features before layer 0 (so column j of weight_ih_l0 is token j's input
vector), and whether the head reads every step's state or only the last one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from src.config import MAX_HIDDEN_SIZE, MAX_LAYERS, ModelConfig
from src.errors import UserError, reading

SPEC_FILE = "spec.json"
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
RECURRENT = "recurrent"
Loss = Literal["mse", "cross_entropy"]


@dataclass(frozen=True)
class Head:
    """What a task asks of the network beyond its shape (see the module docstring)."""

    loss: Loss = "mse"
    token_inputs: bool = False
    every_step: bool = False


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a network: plain data, saved next to its weights."""

    cell: str
    hidden_size: int
    num_layers: int
    activation: str
    dropout: float
    num_features: int
    num_outputs: int
    head: Head = Head()

    @classmethod
    def from_config(cls, model: ModelConfig, num_features: int, num_outputs: int, head: Head = Head()) -> ModelSpec:
        return cls(
            model.cell.value,
            model.hidden_size,
            model.num_layers,
            model.activation.value,
            model.dropout,
            num_features,
            num_outputs,
            head,
        )

    @property
    def loss(self) -> Loss:
        """ "mse", or "cross_entropy" (softmax over the outputs, mean over targets)."""
        return self.head.loss

    @property
    def token_inputs(self) -> bool:
        """Inputs are token ids (samples, steps, 1), one-hot encoded over num_features before layer 0."""
        return self.head.token_inputs

    @property
    def every_step(self) -> bool:
        """The head reads every step's state (outputs shaped (samples, steps, num_outputs)), not the last only."""
        return self.head.every_step

    @property
    def input_width(self) -> int:
        """The last axis of the arrays a backend is given: 1 token id, or the features."""
        return 1 if self.token_inputs else self.num_features

    def no_outputs(self, steps: int) -> np.ndarray:
        """What predict returns for zero samples."""
        shape = (0, steps, self.num_outputs) if self.every_step else (0, self.num_outputs)
        return np.zeros(shape, np.float32)

    def save(self, directory: Path) -> None:
        (directory / SPEC_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> ModelSpec:
        path = directory / SPEC_FILE
        with reading(path):
            values = json.loads(path.read_text())
            if "task" in values:
                raise UserError(
                    f"model file from an earlier rnnlab: {path} names a task where it now holds "
                    f"its head; retrain the model"
                )
            spec = cls(**{**values, "head": Head(**values.get("head", {}))})
        problem = spec.problem()
        if problem:
            raise UserError(f"model file corrupt: {path} ({problem})")
        return spec

    def problem(self) -> str | None:
        """What makes this spec impossible to build, or None: a spec read from a file is checked first."""
        checks = [
            (self.cell in GATES, f"cell={self.cell!r}"),
            (
                isinstance(self.hidden_size, int) and 1 <= self.hidden_size <= MAX_HIDDEN_SIZE,
                f"hidden_size={self.hidden_size!r}",
            ),
            (
                isinstance(self.num_layers, int) and 1 <= self.num_layers <= MAX_LAYERS,
                f"num_layers={self.num_layers!r}",
            ),
            (self.activation in ("tanh", "relu"), f"activation={self.activation!r}"),
            (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1, f"dropout={self.dropout!r}"),
            (isinstance(self.num_features, int) and self.num_features >= 1, f"num_features={self.num_features!r}"),
            (isinstance(self.num_outputs, int) and self.num_outputs >= 1, f"num_outputs={self.num_outputs!r}"),
            (self.head.loss in ("mse", "cross_entropy"), f"head.loss={self.head.loss!r}"),
        ]
        return next((f"{what} is not possible" for ok, what in checks if not ok), None)


def canonical_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """The shape every canonical parameter of `spec` must have, in torch's state_dict order."""
    gates_h = GATES[spec.cell] * spec.hidden_size
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in range(spec.num_layers):
        inputs = spec.num_features if layer == 0 else spec.hidden_size
        shapes[f"{RECURRENT}.weight_ih_l{layer}"] = (gates_h, inputs)
        shapes[f"{RECURRENT}.weight_hh_l{layer}"] = (gates_h, spec.hidden_size)
        shapes[f"{RECURRENT}.bias_ih_l{layer}"] = (gates_h,)
        shapes[f"{RECURRENT}.bias_hh_l{layer}"] = (gates_h,)
    shapes["head.weight"] = (spec.num_outputs, spec.hidden_size)
    shapes["head.bias"] = (spec.num_outputs,)
    return shapes
