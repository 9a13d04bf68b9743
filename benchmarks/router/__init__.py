"""Router benchmarks (``python -m benchmarks.router.run``).

BLAS and OpenMP are limited to one thread before numpy or faiss load, so every alternative is measured
on one core (the goals are per core) and no idle BLAS thread spins into another measurement; the router
processes started by the benchmark inherit this.
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
