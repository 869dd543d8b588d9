"""rnnlab: experiment-tracked recurrent neural networks (Hydra, MLflow, DVC, NumPy, PyTorch, Keras)."""

from src.errors import quiet_interrupt_while_starting

quiet_interrupt_while_starting()
