"""Bare NumPy: our network (src/frameworks/numpy/network.py) and Adam with clipping (optimizers.py),
driven by a plain loop; no Hydra, no MLflow, no backend class, no early-stopping bookkeeping."""

import time

import numpy as np

from benchmarks.bare.common import BATCH_SIZE, EPOCHS, GRAD_CLIP, HIDDEN_SIZE, LR, SEED, report, sine_splits
from src.frameworks.initialization import initial_weights
from src.frameworks.numpy import network
from src.frameworks.numpy.optimizers import Adam, clip_grad_norm, flatten, unflatten
from src.frameworks.spec import ModelSpec, canonical_shapes

imported = time.time()
x, y, val_x, val_y, test_x, test_y, y_std = sine_splits()
spec = ModelSpec("lstm", HIDDEN_SIZE, 1, "tanh", 0.0, num_features=1, num_outputs=1)
params = initial_weights(spec, np.random.default_rng(SEED))
shapes = canonical_shapes(spec)
optimizer = Adam(LR)
rng = np.random.default_rng(SEED)


def predict(inputs: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [
            network.forward(params, spec, inputs[start : start + network.INFERENCE_BATCH])[0]
            for start in range(0, len(inputs), network.INFERENCE_BATCH)
        ]
    )


train_start = time.time()
val_losses = []
for _epoch in range(EPOCHS):
    order = rng.permutation(len(x))
    for start in range(0, len(x), BATCH_SIZE):
        batch = order[start : start + BATCH_SIZE]
        loss, grads, _ = network.loss_and_gradients(params, spec, x[batch], y[batch])
        g, _ = clip_grad_norm(flatten(grads, shapes), GRAD_CLIP)
        params = unflatten(optimizer.step(flatten(params, shapes), g), shapes)
    val_losses.append(network.mse(predict(val_x), val_y)[0])
train_end = time.time()
test_mse = network.mse(predict(test_x), test_y)[0] * y_std**2
report(imported=imported, train_start=train_start, train_end=train_end, val_losses=val_losses, test_mse=test_mse)
