"""IMM-compatible incremental face clustering: join existing clusters, seed new ones.

One call is one clustering run over a dataset. Faces that already have a cluster id
keep it; the unclustered ones (new, or independent from an earlier run) go through:

1. join - each against every cluster, on centroid and top-k evidence (`_join`);
2. seed - average linkage among the remaining seed-eligible faces (`_seed`), then
   groups that stand apart from every other face (`_seed_apart`: a small album);
3. join - the remaining faces, eligible or not, against every cluster, new ones included;
4. relaxed join - faces whose best cluster clearly stands out (`_join_standing_out`);
5. re-examination - clusters the evidence now joins merge (`_reexamine`), and a
   cluster each of whose faces would join a larger one goes into it (`_absorb_joinable`);
   strict joins then repeat against whatever changed until nothing does.

Whatever still fits nowhere is `INDEPENDENT` and is retried on the next run; a run that
is told which clusters are `settled` (as the previous run left them) retries it only
against clusters that changed.

Cost, for n candidates, c clustered faces and d dimensions: joining is O(n*c*d) time
and O(tile) memory (similarities are computed in tiles). Seeding scans all candidate
pairs in tiles, O(n^2*d) time, keeping only the pairs above `seed_similarity`, and runs
average linkage on that sparse pair graph (`_SparseLinkage`): memory O(pairs + n*d).
Measured by bench/cluster_scale.py: 100k faces of 640 dimensions from nothing in under
a minute on one core, 1k new faces added to them in about 2 s. The pairs grow with the
square of the largest person's photos: a synthetic 1M library whose most photographed
person has 28k eligible faces holds about 500M pairs (8 GiB). So a run over more than
100k unclustered faces, nothing being known settled, goes as runs over parts of 100k
would (`_in_parts`): the way a library is clustered when runs follow its uploads.

The package follows those phases: config.py (what a run is given and returns),
run_state.py (what it keeps), scans.py (similarities in tiles), joins.py, seeding.py
with linkage.py, merges.py (re-examination), assignments.py, and runs.py, which
chains them.
"""

from openimm.grouping.figure_clustering.assignments import membership_confidence
from openimm.grouping.figure_clustering.config import (
    INDEPENDENT,
    UNAVAILABLE,
    Assignment,
    ClusteringConfig,
    ClusteringOutcome,
    Embedding,
    FaceColumns,
    FaceToCluster,
)
from openimm.grouping.figure_clustering.runs import cluster_face_columns, cluster_figures

__all__ = [
    "INDEPENDENT",
    "UNAVAILABLE",
    "Assignment",
    "ClusteringConfig",
    "ClusteringOutcome",
    "Embedding",
    "FaceColumns",
    "FaceToCluster",
    "cluster_face_columns",
    "cluster_figures",
    "membership_confidence",
]
