"""Start the session service (`python -m services.session`) or rebuild its projection
(`python -m services.session rebuild [--schema NAME]`)."""

from __future__ import annotations

import argparse
import asyncio

from services.platform import lifecycle
from services.platform import settings as settings_module
from services.session import service
from services.session.config import SessionSettings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.session", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the service (the default)")
    rb = sub.add_parser("rebuild", help="replay the whole EVENTS stream into an empty projection")
    rb.add_argument("--schema", help="rebuild into this schema instead of the live one")
    args = parser.parse_args()
    cfg = settings_module.load(SessionSettings)
    lifecycle.configure_logging(cfg.log_level)
    if args.command == "rebuild":
        count = asyncio.run(service.rebuild(cfg, args.schema))
        print(f"rebuilt the projection from {count} events")
        return
    lifecycle.run_until_signal("session", service.serve, cfg)


if __name__ == "__main__":
    main()
