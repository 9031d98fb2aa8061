"""Start the jobrunner (`python -m services.jobrunner`): takes jobs from JOBS until SIGTERM, then drains."""

from __future__ import annotations

import ctypes
import sys

from services.common import lifecycle
from services.common import settings as settings_module
from services.jobrunner import service
from services.jobrunner.config import JobrunnerSettings


def _fewer_malloc_arenas() -> None:
    """glibc gives each thread its own malloc arena; with job threads, chunk threads and gRPC's, the freed
    chunk buffers stay spread over many arenas and resident. Two arenas keep the peak RSS near what is in use.
    And a chunk's columns (megabytes each) are always mapped and unmapped on their own: glibc otherwise raises
    its mmap threshold to the largest block freed, and then serves those blocks from arenas that fragment."""
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, 2)  # M_ARENA_MAX
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD (a fixed one)
    except (OSError, AttributeError):
        pass


def main() -> None:
    _fewer_malloc_arenas()
    cfg = settings_module.load(JobrunnerSettings)
    lifecycle.configure_logging(cfg.log_level)
    lifecycle.run_until_signal("jobrunner", service.serve, cfg)


if __name__ == "__main__":
    main()
