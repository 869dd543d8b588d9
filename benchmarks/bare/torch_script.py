"""Bare PyTorch: nn.LSTM + nn.Linear on the last step, Adam, clip_grad_norm_, a plain loop; no Hydra,
no MLflow. Runs on CUDA when there is one, as the workflow's framework.device=auto does."""

import time

import numpy as np
import torch
from torch import nn

from benchmarks.bare.common import BATCH_SIZE, EPOCHS, GRAD_CLIP, HIDDEN_SIZE, LR, SEED, report, sine_splits

imported = time.time()
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.manual_seed(SEED)


class Network(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.recurrent = nn.LSTM(input_size=1, hidden_size=HIDDEN_SIZE, batch_first=True)
        self.head = nn.Linear(HIDDEN_SIZE, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.recurrent(x)
        return self.head(outputs[:, -1])


splits = sine_splits()
x, y, val_x, val_y, test_x, test_y = (torch.as_tensor(array, device=device) for array in splits[:6])
network = Network().to(device)
optimizer = torch.optim.Adam(network.parameters(), lr=LR)
loss_fn = nn.MSELoss()
rng = np.random.default_rng(SEED)

train_start = time.time()
val_losses = []
for _epoch in range(EPOCHS):
    network.train()
    total = 0.0
    order = torch.as_tensor(rng.permutation(len(x)), device=device)
    for start in range(0, len(x), BATCH_SIZE):
        index = order[start : start + BATCH_SIZE]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(network(x[index]), y[index])
        loss.backward()
        nn.utils.clip_grad_norm_(network.parameters(), GRAD_CLIP)
        optimizer.step()
        total += loss.item() * len(index)
    network.eval()
    with torch.no_grad():
        val_losses.append(loss_fn(network(val_x), val_y).item())  # 3000 sequences: one call, as the backend
train_end = time.time()
with torch.no_grad():
    test_mse = loss_fn(network(test_x), test_y).item() * splits.y_std**2
report(
    imported=imported,
    train_start=train_start,
    train_end=train_end,
    val_losses=val_losses,
    test_mse=test_mse,
    device=str(device),
)
