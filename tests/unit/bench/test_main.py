"""`python -m bench --help` answers with the suites, not "unknown suites" (issue 35, item 9)."""

from __future__ import annotations

import subprocess
import sys


def test_help_lists_the_suites_and_an_unknown_suite_is_refused() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "bench", "--help"], capture_output=True, text=True, check=False
    )
    assert shown.returncode == 0 and "unknown" not in shown.stderr
    assert "usage: python -m bench" in shown.stdout
    assert "overhead" in shown.stdout and "memory" in shown.stdout
    wrong = subprocess.run(
        [sys.executable, "-m", "bench", "nosuch"], capture_output=True, text=True, check=False
    )
    assert wrong.returncode == 2 and "unknown suites ['nosuch']" in wrong.stderr
