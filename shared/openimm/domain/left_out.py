"""Why a face is in no cluster, in the words of someone who has never read IMM's API.

A face outside every person carries one of IMM's reserved cluster ids; `openimm run`
prints these words by it, and the API gives them with each such face
(Figure.FigureClusterReason), so that the gallery shows the same reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openimm.domain.cluster_edits import MOVED_FROM
from openimm.grouping.figure_clustering import INDEPENDENT, UNAVAILABLE

LEFT_OUT_BECAUSE = {
    INDEPENDENT: "fits no one yet: a person needs 3 clear photos to start a group",
    UNAVAILABLE: "not grouped yet: the next run will group it",
}
MOVED_OUT = "taken out of a person by hand: no clustering run puts it back"


def left_out_reason(figure: Mapping[str, Any]) -> str | None:
    """Why this figure row is in no cluster; None when it is in one."""
    cluster_id = figure.get("FigureClusterId", UNAVAILABLE)
    if cluster_id == INDEPENDENT and figure.get(MOVED_FROM):
        return MOVED_OUT
    return LEFT_OUT_BECAUSE.get(cluster_id)
