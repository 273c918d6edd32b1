"""The tool's own version, read from its installed metadata so pyproject.toml is the one source."""

from importlib.metadata import version

__version__ = version("capsule")
