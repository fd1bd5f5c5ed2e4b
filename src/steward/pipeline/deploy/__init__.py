"""Deployments: a merged change rolled out to the nodes it affects, batch by batch, halting
on failure."""

from __future__ import annotations

from steward.pipeline.deploy.rollout import (
    DeployError,
    Deployment,
    Deployments,
    EnvironmentLocked,
    NodeRunner,
    ServerNodeRunner,
    Strategy,
)

__all__ = [
    "DeployError",
    "Deployment",
    "Deployments",
    "EnvironmentLocked",
    "NodeRunner",
    "ServerNodeRunner",
    "Strategy",
]
