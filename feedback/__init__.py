"""Judges and learned metrics (QDHF, QDAIF).

This package is part of the qdkit distribution; its contents arrive with the
learned-descriptor and AI-feedback work. It imports ``qdkit``, never the reverse.
"""

__all__: list[str] = []
