"""Start the jobrunner (`python -m services.jobrunner`): takes jobs from JOBS until SIGTERM, then drains."""

from __future__ import annotations

from services.jobrunner import service
from services.jobrunner.config import JobrunnerSettings
from services.platform import lifecycle
from services.platform import settings as settings_module


def main() -> None:
    lifecycle.tune_malloc()
    cfg = settings_module.load(JobrunnerSettings)
    lifecycle.configure_logging(cfg.log_level)
    lifecycle.run_until_signal("jobrunner", service.serve, cfg)


if __name__ == "__main__":
    main()
