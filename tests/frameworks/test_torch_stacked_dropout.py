"""A stacked torch RNN with dropout trains on CUDA one layer at a time (each layer through cuDNN, torch's
dropout between them), so that its dropout masks come from the generator a checkpoint restores; cuDNN's
own stacked dropout keeps its state out of reach, and turning cuDNN off instead made an epoch of
`experiment=chars_lm` 5.6x slower on an H200. These tests pin, on the CPU, that the layer-by-layer path
is the same network: same outputs and gradients without dropout, masks drawn from torch's seeded
generator with it, and the module's parameters and saved names unchanged. The CUDA side (a resumed fit
equals an uninterrupted one) is tests/frameworks/test_torch_cuda_resume.py."""

from __future__ import annotations

import pytest
import torch

from src.frameworks.spec import ModelSpec
from src.frameworks.torch import RecurrentNetwork


def network(cell: str, dropout: float) -> RecurrentNetwork:
    torch.manual_seed(0)
    return RecurrentNetwork(ModelSpec(cell, 8, 3, "tanh", dropout, 2, 1))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_without_dropout_layer_by_layer_equals_the_stacked_module(cell) -> None:
    stacked, layered = network(cell, 0.0), network(cell, 0.0)
    x = torch.randn(5, 7, 2)
    expected = stacked.recurrent(x)[0]
    got = layered._layer_by_layer(x)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    expected.square().sum().backward()
    got.square().sum().backward()
    for (name, a), (_, b) in zip(stacked.recurrent.named_parameters(), layered.recurrent.named_parameters()):
        assert b.grad is not None, name  # every layer's own parameters learn through the lent weights
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_with_dropout_the_masks_come_from_torchs_seeded_generator() -> None:
    layered = network("lstm", 0.5)
    x = torch.randn(5, 7, 2)
    torch.manual_seed(3)
    first = layered._layer_by_layer(x)
    torch.manual_seed(3)
    again = layered._layer_by_layer(x)
    torch.manual_seed(4)
    other = layered._layer_by_layer(x)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.allclose(first, other)
    layered.recurrent.dropout = 0.0
    assert not torch.allclose(first, layered._layer_by_layer(x))  # dropout was applied between layers


def test_the_network_keeps_one_recurrent_module_and_its_names() -> None:
    layered = network("lstm", 0.3)
    names = [name for name, _ in layered.named_parameters()]
    assert names == [
        *(
            f"recurrent.{kind}_l{layer}"
            for layer in range(3)
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ),
        "head.weight",
        "head.bias",
    ]
    assert set(layered.state_dict()) == set(names)
    assert not layered._cudnn_would_keep_dropout()  # on the CPU the stacked module runs as before
