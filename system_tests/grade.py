"""``optivex grade`` / ``make grade``: run the black-box system tests, print the grade.

Usage::

    optivex grade                                  # start our exchange and grade it
    optivex grade --target 10.0.0.5:7401,7402,7403,7404 \\
        --admin-user admin --admin-password admin-demo \\
        --participants alice:alice-demo,bob:bob-demo,carol:carol-demo,dave:dave-demo \\
        [--service-password SECRET]                # grade a running exchange

Every other argument is passed to pytest (``-k risk``, ``-x``, ``-v`` ...).  The
report goes to the terminal and to ``results/grade/`` (``--grade-results DIR``):
``summary.md``, ``grade.json`` and ``junit.xml``.  The exit status is pytest's:
0 when every test passed, 1 when some failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

SUITE = Path(__file__).resolve().parent


def pytest_args(argv: list[str]) -> list[str]:
    """The pytest command line for ``argv`` (exposed for the self-tests)."""
    return [
        str(SUITE),
        # The suite must not depend on the project's pytest settings (the grader
        # may run from an installed copy), so the ones it needs are given here.
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        "-p",
        "no:cacheprovider",
        "-q",
        *argv,
    ]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``optivex grade``; returns pytest's exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        print("pytest options are accepted too; grader options: pytest --help | grep -A30 optivex")
        return 0
    import pytest  # imported late: `optivex --help` must not pay for it

    return int(pytest.main(pytest_args(args)))


if __name__ == "__main__":
    raise SystemExit(main())
