"""A stacked torch RNN with dropout trains on CUDA one layer at a time (each layer through cuDNN, torch's
dropout between them), so that its dropout masks come from the generator a checkpoint restores; cuDNN's
own stacked dropout keeps its state out of reach, and turning cuDNN off instead made an epoch of
`experiment=chars_lm` 5.2x slower on an H200. These tests pin, on the CPU, that the layer-by-layer path
is the same network: same outputs and gradients without dropout, the stacked module's own masks with it
(same generator, same layers), and the module's parameters and saved names unchanged. The CUDA side (a
resumed fit equals an uninterrupted one) is tests/frameworks/test_torch_cuda_resume.py."""

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


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_with_dropout_layer_by_layer_draws_the_stacked_modules_masks(cell) -> None:
    """On the CPU torch's stacked module applies its dropout with the same generator, between the same
    layers: under one seed both paths give the same outputs to the bit (dropout after the last layer,
    or masks from another stream, would not)."""
    stacked, layered = network(cell, 0.5), network(cell, 0.5)
    stacked.train()
    x = torch.randn(5, 7, 2)
    torch.manual_seed(3)
    expected = stacked.recurrent(x)[0]
    torch.manual_seed(3)
    got = layered._layer_by_layer(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    torch.manual_seed(4)
    assert not torch.allclose(layered._layer_by_layer(x), got)  # the masks are drawn, not fixed
    layered.recurrent.dropout = 0.0
    assert not torch.allclose(layered._layer_by_layer(x), got)  # and applied


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
