"""Optimizers as small composable transforms (the optax shape), digital and device-assisted.

    from host.optim import adam, tngd, partition, chain, Optimizer
    tx = partition({"ngd": tngd(dev, lam=0.01), "rest": adam(lr=3e-3)}, {0: "ngd", "*": "rest"})
    opt = Optimizer("mine", tx)
    state = opt.init(theta, rng, groups=model.groups)
    state, info = opt.step(state, X, y, objective)

One module per algorithm (``sgd``, ``adam``, ``rmsprop``, ``ngd``, ``tngd``, ``tngd_adam``,
``langevin``, ``overdamped``, ``adaptive_langevin``, ``natural_langevin``), each a builder that
returns a ``Transform``; ``presets`` (AdLaLa, LOL, LaLa) and ``partitioned`` (any partition, as
text) compose them; ``ALGORITHMS`` is what ``thermohil train --algo`` runs; ``backend`` is how
the device serves the transforms that use it.
"""
from __future__ import annotations

from host.optim.adam import adam, scale_by_adam
from host.optim.adaptive_langevin import adl
from host.optim.backend.packet import CurvatureSaturates, MomentaSaturate
from host.optim.checks import NonFiniteError
from host.optim.langevin import langevin
from host.optim.natural_langevin import natural_langevin
from host.optim.ngd import natural_direction, ngd
from host.optim.optimizer import Optimizer, TrainState, decode_rng, encode_rng
from host.optim.overdamped import overdamped
from host.optim.partition import partition
from host.optim.partition_text import partitioned
from host.optim.presets import adlala, every_layer, lala, lol
from host.optim.registry import ALGORITHMS, AlgorithmSpec, register
from host.optim.rmsprop import rmsprop
from host.optim.schedules import Schedule, as_schedule, cosine_decay, exponential_decay
from host.optim.sgd import sgd
from host.optim.tngd import tngd, tngd_direction
from host.optim.tngd_adam import tngd_adam
from host.optim.transform import (Transform, apply_updates, chain, scale_by_learning_rate, stateless,
                                  trace)

__all__ = ["Transform", "chain", "partition", "apply_updates", "stateless", "trace",
           "scale_by_learning_rate", "scale_by_adam", "natural_direction", "tngd_direction",
           "Optimizer", "TrainState", "encode_rng", "decode_rng", "ALGORITHMS", "AlgorithmSpec", "register",
           "NonFiniteError", "CurvatureSaturates", "MomentaSaturate", "Schedule", "as_schedule",
           "exponential_decay", "cosine_decay",
           "sgd", "adam", "rmsprop", "ngd", "tngd", "tngd_adam", "langevin", "overdamped", "adl",
           "natural_langevin", "adlala", "lol", "lala", "partitioned", "every_layer"]
