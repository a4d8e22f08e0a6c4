"""`python -m app`: read Settings (environment, then flags) and serve."""

from __future__ import annotations

import argparse
import asyncio
import logging

from aiohttp import web

from app.config import Settings
from app.gc_tuning import tune_gc
from app.main import HANDLER_CANCELLATION, create_app

SOCKET_HANDLERS_GRACE_SECONDS = 2.0


def parse_flags(argv: list[str] | None = None) -> dict[str, str]:
    """Every setting as a flag (`--port 5001`, `--mongodb-uri ...`), overriding the environment."""
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    for name, field in Settings.model_fields.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default=None,
            help=f"{name.upper()} (default: {field.get_default(call_default_factory=True)})",
        )
    return {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}


def main() -> None:
    settings = Settings(**parse_flags())  # type: ignore[arg-type]
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        import uvloop
    except ImportError:
        pass
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    logging.getLogger(__name__).info("listening on http://%s:%s", settings.host, settings.port)
    app = create_app(settings)
    tune_gc(app)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        print=None,
        handler_cancellation=HANDLER_CANCELLATION,
        # Sockets are closed by the app itself; this only bounds waiting for their handlers.
        shutdown_timeout=SOCKET_HANDLERS_GRACE_SECONDS,
    )


if __name__ == "__main__":
    main()
