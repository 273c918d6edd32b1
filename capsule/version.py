"""The tool's own version, read from its installed metadata so pyproject.toml is the one source."""

from importlib.metadata import version

# The name on the package index: `capsule` there is another project (2016), and "Compute
# Capsules" are Code Ocean's. The command and the import stay `capsule`.
DISTRIBUTION = "hls4ml-capsule"
__version__ = version(DISTRIBUTION)
