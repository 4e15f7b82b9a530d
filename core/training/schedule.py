"""Learning-rate schedules: the learning rate of each epoch, from the base rate.

A schedule is a function `(lr, epoch, epochs) -> lr of that epoch`, epochs counted from 1.
The training loop sets `optimizer.lr` before each epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable


def constant(lr: float, epoch: int, epochs: int) -> float:
    return lr


def cosine(lr: float, epoch: int, epochs: int) -> float:
    """Half a cosine from `lr` at the first epoch towards 0 after the last.

    The small steps at the end settle the weights, which smooths the decision boundary
    (see README, Results).
    """
    return lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / epochs))


SCHEDULES: dict[str, Callable[[float, int, int], float]] = {"constant": constant, "cosine": cosine}
