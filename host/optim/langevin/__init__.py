"""The Langevin family (Leimkuhler, Matthews & Vlaar 2019; DESIGN §6): one partitioned integrator,
``PartitionedLangevin``, in which each parameter group (MLP layer) runs its own scheme —
Langevin (BAOAB), overdamped Langevin (BAOAB limit), Adaptive Langevin or thermodynamic natural
Langevin — on one gradient per step; the named algorithms are presets of it.

    from host.optim.langevin import adlala, PartitionedLangevin, AdLScheme, LangevinScheme
    opt = adlala(h=0.25, tau1=1e-4, tau2=1e-4)                   # the paper's spiral settings
    opt = PartitionedLangevin(0.1, "0:adl(tau=1e-3), *:langevin(gamma=1)")

Modules: ``steps`` (the A, B, O, C, D, E sub-steps), ``schemes`` (what a group does per step),
``partition`` (layers → schemes), ``integrator`` (the step), ``presets`` (the named algorithms).
"""
from __future__ import annotations

from host.optim.langevin.integrator import Group, PartitionedLangevin
from host.optim.langevin.partition import Partition, parse_partition
from host.optim.langevin.presets import adl, adlala, lala, langevin, lol, overdamped, partitioned
from host.optim.langevin.schemes import (SCHEMES, AdLScheme, GroupState, LangevinScheme, NaturalScheme,
                                         OverdampedScheme, Scheme, make_scheme)

__all__ = ["PartitionedLangevin", "Partition", "parse_partition", "Group", "GroupState", "Scheme",
           "LangevinScheme", "OverdampedScheme", "AdLScheme", "NaturalScheme", "SCHEMES", "make_scheme",
           "langevin", "overdamped", "adl", "adlala", "lol", "lala", "partitioned"]
