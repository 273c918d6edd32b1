"""capsule: reproducible, efficient hls4ml FPGA machine-learning experiments in one locked file."""

from capsule.api import check, diff, init, load, pack
from capsule.capsulefile import Capsule
from capsule.errors import CapsuleError
from capsule.version import __version__

__all__ = ["Capsule", "CapsuleError", "__version__", "check", "diff", "init", "load", "pack"]
