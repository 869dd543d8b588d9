"""Bare Keras 3 on TensorFlow: Sequential(LSTM, Dense), Adam with global_clipnorm, model.fit with the
validation split; no Hydra, no MLflow. Unlike the workflow it leaves op determinism off, as a plain
script would."""

import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from benchmarks.bare.common import BATCH_SIZE, EPOCHS, GRAD_CLIP, HIDDEN_SIZE, LR, SEED, VAL_BATCH, report, sine_splits  # noqa: E402

imported = time.time()
x, y, val_x, val_y, test_x, test_y, y_std = sine_splits()
keras.utils.set_random_seed(SEED)
model = keras.Sequential([keras.Input(shape=(None, 1)), keras.layers.LSTM(HIDDEN_SIZE), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.Adam(learning_rate=LR, epsilon=1e-8, global_clipnorm=GRAD_CLIP), loss="mse")
epoch_starts = []
history = model.fit(
    x,
    y,
    batch_size=BATCH_SIZE,
    epochs=EPOCHS,
    validation_data=(val_x, val_y),
    validation_batch_size=VAL_BATCH,
    shuffle=True,
    verbose=0,
    callbacks=[keras.callbacks.LambdaCallback(on_epoch_begin=lambda *_: epoch_starts.append(time.time()))],
)
train_end = time.time()
test_mse = float(model.evaluate(test_x, test_y, batch_size=VAL_BATCH, verbose=0)) * y_std**2
report(
    imported=imported,
    train_start=epoch_starts[0],
    train_end=train_end,
    val_losses=history.history["val_loss"],
    test_mse=test_mse,
)
