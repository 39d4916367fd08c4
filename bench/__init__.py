"""Benchmarks, run by hand: ``python -m bench.append`` and ``python -m bench.fanout``.

Each starts the real servers it needs in a temporary directory, prints its figures and stops
everything it started. See ``bench/README.md`` for what is measured and how to read it.
"""

from __future__ import annotations

import logging
import os
import warnings


def quiet() -> None:
    """Keep the figures readable: only warnings from libraries, no platformdirs chatter."""
    warnings.filterwarnings("ignore", module="platformdirs")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def per_second(count: int, seconds: float) -> float:
    """``count`` per second over ``seconds`` (0 when nothing was timed)."""
    return count / seconds if seconds > 0 else 0.0


def lift_limits() -> None:
    """Lift the per-user frame and connection limits for a platform started after this: a
    benchmark measures the platform, and its clients share the admin token."""
    os.environ["SALON_FRAMES_PER_SECOND"] = "1000000"
    os.environ["SALON_FRAME_BURST"] = "1000000"
    os.environ["SALON_MAX_CONNECTIONS_PER_USER"] = "1000"
