"""Conversions to and from other QD libraries (optional dependencies, imported lazily)."""
