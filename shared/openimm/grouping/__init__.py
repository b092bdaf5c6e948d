"""Grouping of faces into figure clusters, IMM-compatible."""

from __future__ import annotations

from openimm.grouping.figure_clustering import (
    INDEPENDENT,
    UNAVAILABLE,
    Assignment,
    ClusteringConfig,
    ClusteringOutcome,
    FaceToCluster,
    cluster_figures,
    membership_confidence,
)

__all__ = [
    "INDEPENDENT",
    "UNAVAILABLE",
    "Assignment",
    "ClusteringConfig",
    "ClusteringOutcome",
    "FaceToCluster",
    "cluster_figures",
    "membership_confidence",
]
