"""The release version, in one place: packaging reads it, the CLIs and /metrics show it."""

__version__ = "0.2.0"
