"""`python -m app`: read Settings (environment, then flags) and serve.

Every setting is an environment variable (upper case) and a flag (`--port 5001`); a flag
wins. A start-up problem (a bad setting, a port in use, a store that cannot open) is one
line on stderr and a non-zero exit; LOG_LEVEL=DEBUG adds its traceback."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from app import logs
from app.config import Settings
from app.gc_tuning import tune_gc
from app.main import HANDLER_CANCELLATION, WRITER_KEY, create_app
from app.storage import StoreError

SOCKET_HANDLERS_GRACE_SECONDS = 2.0
# aiohttp's access line without its own timestamp (the log line has one).
ACCESS_LOG_FORMAT = '%a "%r" %s %b "%{Referer}i" "%{User-Agent}i" %Tfs'
log = logging.getLogger("app")


class StartupError(Exception):
    """What stops the server from starting, said in one line."""


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_flags(argv: list[str] | None = None) -> dict[str, str]:
    """Every setting as a flag (`--port 5001`, `--mongodb-uri ...`), overriding the environment."""
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = ",".join(default) if isinstance(default, list) else default
        parser.add_argument(
            flag(name),
            dest=name,
            default=None,
            metavar=name.upper(),
            help=f"{field.description} [env {name.upper()}, default: {shown!s}]",
        )
    return {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}


def read_settings(argv: list[str] | None = None) -> Settings:
    try:
        return Settings(**parse_flags(argv))  # type: ignore[arg-type]
    except ValidationError as error:
        raise StartupError("; ".join(_problem(e) for e in error.errors())) from error


def _problem(error: Any) -> str:
    where = str(error["loc"][0]) if error["loc"] else ""
    got = error.get("input")
    name = f"{where.upper()} ({flag(where)})" if where else "settings"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{name}: {message} (got {got!r})"


async def serve(app: web.Application, settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM; say "listening on" once the port is bound."""
    runner = web.AppRunner(
        app,
        handler_cancellation=HANDLER_CANCELLATION,
        access_log_format=ACCESS_LOG_FORMAT,
        # Sockets are closed by the app itself; this only bounds waiting for their handlers.
        shutdown_timeout=SOCKET_HANDLERS_GRACE_SECONDS,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        try:
            await site.start()
        except OSError as error:
            raise StartupError(
                f"cannot listen on {settings.host}:{settings.port} (HOST/--host, PORT/--port): "
                f"{error.strerror or error}"
            ) from error
        log.info("listening on http://%s:%s", settings.host, settings.port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("stopping: closing connections, writing rooms")
    started, writes = time.monotonic(), app[WRITER_KEY].writes
    await runner.cleanup()
    took = time.monotonic() - started
    log.info("stopped: %d room writes in %.2f s", app[WRITER_KEY].writes - writes, took)


def main(argv: list[str] | None = None) -> int:
    debug = os.environ.get("LOG_LEVEL", "").upper() == "DEBUG"
    try:
        settings = read_settings(argv)
        logs.configure(settings.log_level, settings.log_format)
        try:
            import uvloop
        except ImportError:
            pass
        else:
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        app = create_app(settings)
        tune_gc(app)
        asyncio.run(serve(app, settings))
    except StartupError as error:
        return _fail(str(error), error, debug)
    except StoreError as error:
        return _fail(f"the store cannot open: {error}", error, debug)
    except KeyboardInterrupt:
        return 0
    except ValueError as error:  # a combination of settings that cannot work
        return _fail(str(error), error, debug)
    except Exception as error:  # a store that cannot open, a setting that cannot work
        return _fail(f"{type(error).__name__}: {error}", error, debug)
    return 0


def _fail(message: str, error: BaseException, debug: bool) -> int:
    if debug:
        logging.getLogger("app").error("start-up failed", exc_info=error)
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
