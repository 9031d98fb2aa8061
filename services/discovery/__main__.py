"""Start the discovery service: `python -m services.discovery` (settings from SFVAULT_* variables)."""

from __future__ import annotations

from services.discovery import service
from services.discovery.config import DiscoverySettings
from services.platform import lifecycle
from services.platform import settings as settings_module


def main() -> None:
    cfg = settings_module.load(DiscoverySettings)
    lifecycle.configure_logging(cfg.log_level)
    lifecycle.run_until_signal("discovery", service.serve, cfg)


if __name__ == "__main__":
    main()
