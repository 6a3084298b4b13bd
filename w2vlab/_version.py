"""The package version: one place, read by the package metadata (pyproject), the exporter and the report."""

__version__ = "0.1.0"
