"""PyTorch backend: nn.RNN / nn.LSTM / nn.GRU with a linear head on the last step's state (or every step's)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from src.config import Optimizer, TrainerConfig
from src.data.base import Split
from src.errors import UserError, reading
from src.frameworks.base import predict_in_batches
from src.frameworks.checkpoint import rng_state, set_rng_state
from src.frameworks.initialization import initial_weights
from src.frameworks.spec import ModelSpec
from src.frameworks.training import Checkpointing, EpochCallback, FitResult, TrainingSteps, run_epochs, shuffled_batches

WEIGHTS_FILE = "weights.pt"
RECURRENT_LAYERS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
WEIGHT_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class RecurrentNetwork(nn.Module):
    """A stacked recurrent layer read out by a linear head at the last time step, or at every step for
    a language model, whose token ids enter one-hot encoded."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        extra = {"nonlinearity": spec.activation} if spec.cell == "rnn" else {}
        self.recurrent = RECURRENT_LAYERS[spec.cell](
            input_size=spec.num_features,
            hidden_size=spec.hidden_size,
            num_layers=spec.num_layers,
            dropout=spec.dropout if spec.num_layers > 1 else 0.0,
            batch_first=True,
            **extra,
        )
        self.head = nn.Linear(spec.hidden_size, spec.num_outputs)
        # One single-layer shape per layer, without storage: `_layer_by_layer` lends each the stacked
        # layer's own parameters, so names, checkpoints and saved weights stay those of one module.
        self._single_layers = tuple(
            RECURRENT_LAYERS[spec.cell](
                input_size=spec.num_features if index == 0 else spec.hidden_size,
                hidden_size=spec.hidden_size,
                batch_first=True,
                device="meta",
                **extra,
            )
            for index in range(spec.num_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.token_inputs:
            x = functional.one_hot(x[..., 0].long(), self.spec.num_features).to(self.head.weight.dtype)
        if self._cudnn_would_keep_dropout():
            outputs = self._layer_by_layer(x)
        elif self.recurrent.dropout > 0 and self.head.weight.is_cuda:
            with cudnn_compaction_unannounced():  # trained layer by layer: see `_layer_by_layer`
                outputs = self.recurrent(x)[0]
        else:
            outputs = self.recurrent(x)[0]
        return self.head(outputs if self.spec.every_step else outputs[:, -1])

    def _cudnn_would_keep_dropout(self) -> bool:
        """cuDNN keeps a stacked RNN's dropout state inside itself, seeded once and advanced out of reach
        of torch's RNG state: a fit resumed from a checkpoint would draw other masks (seen on an H100)."""
        return (
            self.training and self.recurrent.dropout > 0 and self.head.weight.is_cuda and torch.backends.cudnn.enabled
        )

    def _layer_by_layer(self, x: torch.Tensor) -> torch.Tensor:
        """The stacked layer one layer at a time, each still through cuDNN, with torch's dropout between
        them: the masks come from the CUDA generator, which a checkpoint restores. Turning cuDNN off
        instead made an epoch of `experiment=chars_lm` 5.2x slower on an H200 (14.7 s against 2.84 s;
        2.57 s with no dropout at all). The price: the first call re-packs each layer's lent weights
        into a buffer of its own (the same Parameter objects), so the stacked module, run in
        evaluation, copies them back together at each call (cuDNN's compaction warning, silenced)."""
        for index, layer in enumerate(self._single_layers):
            if index:
                x = functional.dropout(x, self.recurrent.dropout, training=True)
            weights = {f"{kind}_l0": getattr(self.recurrent, f"{kind}_l{index}") for kind in WEIGHT_KINDS}
            with cudnn_compaction_unannounced():
                x, _ = torch.func.functional_call(layer, weights, (x,))
        return x


@contextlib.contextmanager
def cudnn_compaction_unannounced() -> Iterator[None]:
    """Hide cuDNN's warning that a recurrent layer's weights are not one flat buffer (it then copies
    them): expected where weights are lent layer by layer, and printed by every process otherwise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
        yield


def loss_function(spec: ModelSpec):
    """The training loss of `spec`'s task: MSE, or the mean cross-entropy of logits against class ids."""
    if spec.loss == "mse":
        return nn.MSELoss()
    cross_entropy = nn.CrossEntropyLoss()
    return lambda logits, y: cross_entropy(logits.reshape(-1, spec.num_outputs), y.reshape(-1).long())


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"framework.device={device!r} but no CUDA device is available; use auto or cpu")
    index = device.partition(":")[2]
    if index and int(index) >= torch.cuda.device_count():
        raise UserError(f"framework.device={device!r} but torch sees {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(device)


def private_rng():
    """Fork torch's CPU and every CUDA generator: `manual_seed` inside seeds them all, and the
    caller's streams come back unchanged afterwards."""
    return torch.random.fork_rng(devices=list(range(torch.cuda.device_count())))


class TorchBackend:
    name = "torch"

    def __init__(self, spec: ModelSpec, network: RecurrentNetwork, device: torch.device) -> None:
        self.spec = spec
        self.network = network.to(device)
        self.device = str(device)

    @staticmethod
    def check_device(device: str) -> None:
        resolve_device(device)

    @classmethod
    def build(cls, spec: ModelSpec, seed: int, device: str = "auto", init: str = "keras") -> TorchBackend:
        with private_rng():  # torch's own initialisation draws without changing the caller's RNG
            network = RecurrentNetwork(spec)
        backend = cls(spec, network, resolve_device(device))
        backend.set_weights(initial_weights(spec, np.random.default_rng(seed), init))
        return backend

    def fit(
        self,
        train: Split,
        val: Split,
        trainer: TrainerConfig,
        on_epoch: EpochCallback,
        checkpointing: Checkpointing | None = None,
    ) -> FitResult:
        x, y = self._tensor(train.x), self._tensor(train.y)
        val_x, val_y = self._tensor(val.x), self._tensor(val.y)
        optimizer = _optimizer(trainer, self.network.parameters())
        loss_fn = loss_function(self.spec)
        rng = np.random.default_rng(trainer.seed)
        cuda_devices = list(range(torch.cuda.device_count()))

        def train_epoch() -> float:
            self.network.train()
            total = 0.0
            for batch in shuffled_batches(len(x), trainer.batch_size, rng):
                index = torch.as_tensor(batch, device=self.network.head.weight.device)
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(self.network(x[index]), y[index])
                loss.backward()
                if trainer.grad_clip > 0:
                    nn.utils.clip_grad_norm_(self.network.parameters(), trainer.grad_clip)
                optimizer.step()
                total += loss.item() * len(batch)
            return total / len(x)

        def val_loss() -> float:
            self.network.eval()
            with torch.no_grad():
                return loss_fn(self.network(val_x), val_y).item()

        def state() -> dict[str, np.ndarray]:
            saved = {f"weights/{name}": value for name, value in self.get_weights().items()}
            for index, moments in optimizer.state_dict()["state"].items():
                saved.update(
                    {f"optimizer/{index}/{key}": torch.as_tensor(value).cpu().numpy() for key, value in moments.items()}
                )
            saved["rng/batches"] = rng_state(rng)
            saved["rng/torch"] = torch.get_rng_state().numpy()  # dropout masks
            for device in cuda_devices:
                saved[f"rng/cuda/{device}"] = torch.cuda.get_rng_state(device).numpy()
            return saved

        def load_state(saved: dict[str, np.ndarray]) -> None:
            self.set_weights(
                {name.removeprefix("weights/"): value for name, value in saved.items() if name.startswith("weights/")}
            )
            moments: dict[int, dict[str, torch.Tensor]] = {}
            for name, value in saved.items():
                if name.startswith("optimizer/"):
                    _, index, key = name.split("/")
                    moments.setdefault(int(index), {})[key] = torch.as_tensor(value)
            optimizer_state = optimizer.state_dict()
            optimizer_state["state"] = moments
            optimizer.load_state_dict(optimizer_state)  # moves the moments to the parameters' device
            set_rng_state(rng, saved["rng/batches"])
            torch.set_rng_state(torch.as_tensor(saved["rng/torch"]))
            for device in cuda_devices:
                if f"rng/cuda/{device}" in saved:
                    torch.cuda.set_rng_state(torch.as_tensor(saved[f"rng/cuda/{device}"]), device)

        with private_rng():
            torch.manual_seed(trainer.seed)  # dropout draws from a seeded, private stream
            return run_epochs(
                self.name,
                trainer,
                on_epoch,
                TrainingSteps(train_epoch, val_loss, state, load_state),
                self.get_weights,
                self.set_weights,
                checkpointing,
            )

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.network.eval()
        with torch.no_grad():
            return predict_in_batches(lambda part: self.network(self._tensor(part)).cpu().numpy(), x, self.spec)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.spec.save(directory)
        torch.save(self.network.state_dict(), directory / WEIGHTS_FILE)

    @classmethod
    def load(cls, directory: Path, device: str = "auto") -> TorchBackend:
        spec = ModelSpec.load(directory)
        target = resolve_device(device)
        path = directory / WEIGHTS_FILE
        network = RecurrentNetwork(spec)
        with reading(path):  # names or shapes that do not fit the spec are corrupt too
            network.load_state_dict(torch.load(path, map_location=target, weights_only=True))  # never unpickles code
        return cls(spec, network, target)

    def get_weights(self) -> dict[str, np.ndarray]:
        return {
            name: value.detach().cpu().numpy().astype(np.float32) for name, value in self.network.state_dict().items()
        }

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        state = {name: torch.as_tensor(np.asarray(value, dtype=np.float32)) for name, value in weights.items()}
        self.network.load_state_dict(state)

    @staticmethod
    def requirements() -> list[str]:
        return [f"torch=={version('torch').split('+')[0]}"]  # "2.13.0+cpu" is no release on PyPI

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array, dtype=np.float32), device=self.device)


def _optimizer(trainer: TrainerConfig, parameters) -> torch.optim.Optimizer:
    if trainer.optimizer is Optimizer.adam:
        return torch.optim.Adam(parameters, lr=trainer.lr)
    return torch.optim.SGD(parameters, lr=trainer.lr)


BACKEND = TorchBackend
