"""Every failure capsule reports on purpose derives from one root, so the CLI maps errors to exit
codes in one place and a notebook can catch one type.

    CapsuleError                  exit 2: bad input, or the job cannot run here
    ├── SpecError                 the experiment spec (exp.toml) is malformed or invalid
    ├── CapsuleFileError          a capsule file is malformed, unsupported or too large
    │   └── DigestMismatch        a locked field was edited by hand
    ├── DataError                 a data file is missing or does not match its locked hash
    ├── SourceError               an embedded source is unsafe, too large or does not match
    └── StageError                a trial stage failed for a reason of the experiment
    MismatchError                 exit 1: a comparison found differences (diff, later verify)
    RunStopped                    exit 1: a run stopped early (the same failure, trial after
                                  trial) or ended without one usable trial
    CapsuleWarning                a fallback the user should see (Python's warnings; the CLI
                                  prints them as "warning: ...")

Messages are one line and name the file and the key (and line, where the parser knows it).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_BAD_INPUT = 2


class CapsuleError(Exception):
    """Root of capsule's own errors; `exit_code` is what the CLI exits with."""

    exit_code = EXIT_BAD_INPUT


class SpecError(CapsuleError):
    """The experiment spec is malformed or fails validation."""


class CapsuleFileError(CapsuleError):
    """A capsule file cannot be read: malformed, unknown format, too large, or invalid."""


class DigestMismatch(CapsuleFileError):
    """The recorded digest does not match the locked content: the file was edited by hand."""


class DataError(CapsuleError):
    """A data input is missing, unreadable, or differs from its locked size or hash."""


class SourceError(CapsuleError):
    """An embedded source has an unsafe name, is too large, or differs from its locked hash."""


class StageError(CapsuleError):
    """A trial stage failed for a reason of the experiment: its code, data or settings."""


class StageTimeout(StageError):
    """A stage ran out of its time; the trial's status is `timeout`."""


class MismatchError(CapsuleError):
    """A comparison found differences; scripts tell this apart from bad input by exit code 1."""

    exit_code = EXIT_MISMATCH


class RunStopped(CapsuleError):
    """A run ended without results worth its budget: what it finished is kept in the capsule."""

    exit_code = EXIT_MISMATCH


class CapsuleWarning(UserWarning):
    """capsule went on differently than asked (e.g. local runtime because no engine answers)."""
