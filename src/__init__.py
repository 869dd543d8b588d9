"""rnnlab: experiment-tracked recurrent neural networks (Hydra, MLflow, DVC, NumPy, PyTorch, Keras)."""
