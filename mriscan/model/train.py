"""The fit loop: class-balanced, augmented training that keeps the epoch with the best validation AUROC.

Early stopping on validation loss can restore first-epoch weights (it did in the project's earlier
experiments); validation AUROC is the monitored quantity here. This module imports Keras at import time: the
CLI imports it only inside ``fit``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
from sklearn.metrics import roc_auc_score

from mriscan.data.augment import build_augmenter, strip_to_brain
from mriscan.errors import TrainingError
from mriscan.model.architectures import build_model


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (recorded in the model card)."""

    arch: str = "compact"
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-3
    final_learning_rate_fraction: float = 0.02
    seed: int = 2021
    augment: bool = True
    patience: int = 10
    source_balance: float = 0.0
    strip_probability: float = 0.0

    def schedule(self) -> str:
        """The learning-rate schedule in words, for the model card."""
        final = self.learning_rate * self.final_learning_rate_fraction
        return f"Adam, cosine decay from {self.learning_rate:g} to {final:g} over {self.epochs} epochs"


@dataclass
class TrainResult:
    """The trained model and what happened during training."""

    model: Any
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    schedule: str = ""


EpochCallback = Callable[[int, dict[str, float]], None]


def sample_weights(labels: np.ndarray, sources: np.ndarray, source_balance: float) -> np.ndarray:
    """Per-image loss weights: both classes count equally, and within a class each source counts
    in proportion to ``count ** (1 - source_balance)``.

    ``source_balance`` 0 is plain class balancing; 1 makes every source of a class count equally,
    so that a large single-class source cannot decide what "healthy" or "tumour" looks like.

    Examples
    --------
    >>> labels, sources = np.array([0, 0, 0, 1]), np.array(["a", "a", "b", "a"])
    >>> np.round(sample_weights(labels, sources, 0.0).astype(float), 3).tolist()
    [0.667, 0.667, 0.667, 2.0]
    >>> np.round(sample_weights(labels, sources, 1.0).astype(float), 3).tolist()
    [0.5, 0.5, 1.0, 2.0]
    """
    labels, sources = np.asarray(labels).astype(int), np.asarray(sources)
    weights = np.zeros(len(labels), dtype=np.float64)
    for label in (0, 1):
        in_class = labels == label
        if not in_class.any():
            continue
        names, index, counts = np.unique(sources[in_class], return_inverse=True, return_counts=True)
        share = counts ** (1.0 - source_balance)
        per_image = (share / share.sum()) / counts  # each source's share of the class, spread over its images
        weights[in_class] = per_image[index] * len(labels) / 2
    return weights.astype(np.float32)


def train_model(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    config: TrainConfig,
    on_epoch: EpochCallback | None = None,
    initial_weights: list[np.ndarray] | None = None,
    sources: np.ndarray | None = None,
) -> TrainResult:
    """Train ``config.arch`` and return the weights of the best validation-AUROC epoch.

    Training starts from scratch, or from ``initial_weights`` (``get_weights()`` of a network of
    the same architecture and input size) to continue training an existing model on new data.
    """
    model = build_model(config.arch, int(x_train.shape[1]), seed=config.seed)
    if initial_weights is not None:
        _set_initial_weights(model, initial_weights, config.arch)
    # Decaying to a small rate settles the weights: at a constant 1e-3 validation AUROC swung by
    # up to 0.08 between epochs and patience stopped runs at a lucky or unlucky epoch.
    steps = config.epochs * int(np.ceil(len(x_train) / config.batch_size))
    learning_rate = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps,
                                                           alpha=config.final_learning_rate_fraction)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
    )
    weights = sample_weights(y_train, np.zeros(len(y_train)) if sources is None else sources, config.source_balance)
    dataset = _training_dataset(x_train, y_train, weights, config)
    tracker = _BestAuroc(x_val, y_val, config.patience, on_epoch)
    history = model.fit(
        dataset,
        shuffle=False,  # the tf.data pipeline shuffles, with the run's seed
        epochs=config.epochs,
        callbacks=[tracker],
        verbose=0,
    )
    if tracker.best_weights is not None:
        model.set_weights(tracker.best_weights)
    logs = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    logs["val_auroc"] = tracker.scores
    return TrainResult(model=model, history=logs, best_epoch=tracker.best_epoch, schedule=config.schedule())


def _set_initial_weights(model: Any, weights: list[np.ndarray], arch: str) -> None:
    try:
        model.set_weights(weights)
    except ValueError as error:
        raise TrainingError(
            f"the initial weights do not fit a {arch!r} network with input {model.input_shape[1:]} ({error}); "
            "continue training only a model of the same architecture and input size"
        ) from error


def _training_dataset(x: np.ndarray, y: np.ndarray, weights: np.ndarray, config: TrainConfig) -> Any:
    import tensorflow as tf

    inputs: tuple[np.ndarray, ...] = (x.astype(np.float32, copy=False),)
    if config.augment and config.strip_probability > 0:
        inputs += (strip_to_brain(x, config.seed),)
    dataset = tf.data.Dataset.from_tensor_slices((inputs, y.astype(np.float32), weights))
    dataset = dataset.shuffle(len(x), seed=config.seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(config.batch_size)
    if config.augment:
        augment = build_augmenter(config.seed, config.strip_probability)
        dataset = dataset.map(lambda inputs, labels, w: (augment(*inputs), labels, w))
    else:
        dataset = dataset.map(lambda inputs, labels, w: (inputs[0], labels, w))
    return dataset.prefetch(2)


class _BestAuroc(keras.callbacks.Callback):
    """Validation AUROC each epoch (inference mode); keeps the best weights; stops on patience."""

    def __init__(
        self, x_val: np.ndarray, y_val: np.ndarray, patience: int, on_epoch: EpochCallback | None
    ) -> None:
        super().__init__()
        self.x_val, self.y_val, self.patience, self.on_epoch = x_val, y_val, patience, on_epoch
        self.scores: list[float] = []
        self.best_weights: list[np.ndarray] | None = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        probability = self.model.predict(self.x_val, batch_size=128, verbose=0).reshape(-1)
        score = float(roc_auc_score(self.y_val, probability))
        self.scores.append(score)
        if score > max(self.scores[:-1], default=-1.0):
            self.best_weights, self.best_epoch = self.model.get_weights(), epoch + 1
        if self.on_epoch is not None:
            self.on_epoch(epoch + 1, {**(logs or {}), "val_auroc": score})
        if epoch + 1 - self.best_epoch >= self.patience:
            self.model.stop_training = True
