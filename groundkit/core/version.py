"""The package version, in core so that every layer may report it."""
__version__ = "0.2.0"
