"""The NumPy backend: recurrent cells with backpropagation through time written out by hand, no autograd.

One cell per module (rnn, lstm, gru), each with its forward and backward side by side; network.py
stacks them under a dense head; optimizers.py has SGD, Adam and gradient clipping; backend.py fits
them through the Backend protocol of base.py.
"""

from src.frameworks.numpy.backend import NumpyBackend

BACKEND = NumpyBackend

__all__ = ["BACKEND", "NumpyBackend"]
