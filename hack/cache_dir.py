"""Prints the per-version binary cache directory for hack/versions.env (shared by shell and Python)."""

import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "src"))
from quartermaster.localcluster.binaries import bin_dir  # noqa: E402

print(bin_dir())
