"""OpenIMM: IMM's face and image clustering, self-hosted."""

import os

# numpy asks the kernel for transparent huge pages for every array of 4 MB and more; where
# the kernel then compacts memory on the spot (transparent_hugepage/defrag "madvise", a
# common default), one fresh 260 MB matrix took 2.5 s instead of 0.17 s here, and a cold
# process's clustering run of 1000 new faces at 100k took 5.6 s instead of 2.8. The
# variable is read when numpy is imported: set it to 1 to keep numpy's default.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
