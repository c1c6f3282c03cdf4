"""XLA:CPU settings qdkit runs with.

XLA:CPU hands some reductions to the YNNPACK library (its "YNN reduce fusions", on by
default in JAX 0.10). The reductions of a QD iteration are small (an arm's 8 joints, a
2-D descriptor, a batch of 256 rows), and for them the hand-off costs more than the
arithmetic: it also makes XLA materialise every operand of the reduction instead of
computing it in the loop that reduces it. Turning these fusions off made a whole
iteration of the arm default 1.5x to 2.3x faster on a 2-core CPU
(``benchmarks/xla_options.py`` measures it; RESULTS.md has the figures).

Importing qdkit therefore adds ``--xla_cpu_experimental_ynn_fusion_type=-reduce`` to
``XLA_FLAGS`` (YNNPACK keeps its matrix products), with two exceptions:

- ``QDKIT_XLA_DEFAULTS=0`` in the environment keeps XLA's own defaults;
- an ``XLA_FLAGS`` that already sets ``xla_cpu_experimental_ynn_fusion_type`` is left
  as it is.

XLA reads its flags once, when JAX starts its first backend: import qdkit before the
first JAX computation of the process (``qdkit run`` does). The flag concerns the CPU
compiler only; GPU and TPU programs are unchanged.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

#: The flag qdkit adds to ``XLA_FLAGS``.
FLAG = "--xla_cpu_experimental_ynn_fusion_type=-reduce"

#: ``XLA_FLAGS`` names the flag this way; its presence means the user chose.
_NAME = "xla_cpu_experimental_ynn_fusion_type"


def compiler_options() -> dict[str, str]:
    """The same setting as :data:`FLAG`, as compiler options for one program
    (``jax.jit(f).lower(...).compile(compiler_options=...)``): XLA's default list of
    YNN fusions without the reductions. Compiles the same program as the flag (used by
    ``benchmarks/xla_options.py`` to compare both in one process)."""
    return {_NAME: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_DOT"}


def apply_defaults(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Add :data:`FLAG` to ``environ["XLA_FLAGS"]`` unless ``QDKIT_XLA_DEFAULTS=0`` or
    ``XLA_FLAGS`` already sets the option; returns whether it was added."""
    if environ.get("QDKIT_XLA_DEFAULTS", "1").strip() == "0":
        return False
    flags = environ.get("XLA_FLAGS", "")
    if _NAME in flags:
        return False
    environ["XLA_FLAGS"] = f"{flags} {FLAG}".strip()
    return True
