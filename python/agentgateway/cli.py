"""The ``agentgateway`` command: load and check the config, then serve it with granian (ASGI on uvloop)."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from collections.abc import Callable

from . import __version__
from .app import CONFIG_FILE_ENV, CONFIG_INLINE_ENV, LOG_FORMAT, LOG_LEVEL_ENV, Gateway
from .config import GatewayConfig, load_config, load_config_file
from .errors import ConfigError

__all__ = ["main"]

DEFAULT_PORT = 3000


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentgateway",
        description="An OpenAI Chat Completions gateway in front of OpenAI, Anthropic, Bedrock, Gemini and Vertex AI.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("-f", "--file", metavar="FILE", help="the YAML config file (llm: ...)")
    source.add_argument("-c", "--config", metavar="YAML", help="the config itself, inline")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, help=f"port to listen on (default llm.port, else {DEFAULT_PORT})")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: CPU count)"
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, seconds in-flight requests and streams may run before workers are killed",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--validate-only", action="store_true", help="load and check the config, then exit")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="start a local demo OpenAI-compatible upstream and, without -f/-c, serve the bundled demo config",
    )
    parser.add_argument("--version", action="version", version=f"agentgateway {__version__}")
    return parser


def _load(args: argparse.Namespace) -> tuple[GatewayConfig, str]:
    if args.config is not None:
        return load_config(args.config), "<inline config>"
    if args.file is not None:
        return load_config_file(args.file), args.file
    raise ConfigError("no config given: pass -f FILE or -c '<yaml>' (or --demo to try the gateway offline)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.workers < 1:
        print("agentgateway: --workers must be at least 1", file=sys.stderr)
        return 2

    if args.demo:
        from .demo import DEMO_UPSTREAM_ENV, demo_config_text, start_demo_upstream_thread

        os.environ[DEMO_UPSTREAM_ENV] = start_demo_upstream_thread()
        if args.file is None and args.config is None:
            args.config = demo_config_text()

    try:
        config, source = _load(args)
        Gateway(config, source)  # builds the router: a provider that cannot be served is a config error too
    except ConfigError as exc:
        print(f"agentgateway: invalid config\n{exc}", file=sys.stderr)
        return 1

    if args.validate_only:
        print(f"{source}: OK ({len(config.llm.models)} model entries)")
        return 0

    # granian's workers are fresh processes: they load the same source again from these variables.
    if args.config is not None:
        os.environ[CONFIG_INLINE_ENV] = args.config
    else:
        os.environ[CONFIG_FILE_ENV] = os.path.abspath(args.file)
    os.environ[LOG_LEVEL_ENV] = args.log_level.upper()
    port = args.port or config.llm.port or DEFAULT_PORT
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT)
    stop_stats = _start_stats(config, args.workers)
    try:
        _serve(args.host, port, args.workers, args.drain_timeout, args.log_level)
    finally:
        stop_stats()
    return 0


def _start_stats(config: GatewayConfig, workers: int) -> Callable[[], None]:
    """The stats and readiness servers, here in the main process: they sum the tables the workers write into a
    directory of their own (telemetry/_table.py), so one scrape sees every worker, respawned ones included."""
    import shutil
    import tempfile

    from .telemetry import STATS_DIR_ENV, stats_address
    from .telemetry._server import StatsServers

    stats = stats_address(config)
    readiness = os.environ.get("READINESS_ADDR") or config.config.readiness_addr
    if stats == "off" and readiness == "off":
        return lambda: None
    directory = tempfile.mkdtemp(prefix="agentgateway-stats-")
    os.environ[STATS_DIR_ENV] = directory
    servers = StatsServers(directory, workers, __version__)
    servers.start(None if stats == "off" else stats, None if readiness == "off" else readiness)

    def stop() -> None:
        servers.stop()
        shutil.rmtree(directory, ignore_errors=True)

    return stop


def _serve(host: str, port: int, workers: int, drain_timeout: float, log_level: str) -> None:
    from granian import Granian
    from granian.constants import Interfaces, Loops

    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    logging.getLogger("agentgateway").info(
        "agentgateway %s serving on http://%s:%d with %d worker(s)", __version__, host, port, workers
    )
    server = Granian(
        "agentgateway.app:create_app",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        # uvloop everywhere it exists (granian[uvloop] does not install it on Windows, where asyncio's loop serves).
        loop=Loops.uvloop if importlib.util.find_spec("uvloop") is not None else Loops.asyncio,
        factory=True,
        log_level=log_level,  # type: ignore[arg-type]
        # Granian stops accepting on SIGTERM/SIGINT and lets workers finish in-flight requests; past this
        # many seconds it kills them.
        workers_kill_timeout=max(1, round(drain_timeout)),
        # A worker that dies is started again (its metrics stay counted: telemetry/_table.py).
        respawn_failed_workers=True,
        backlog=4096,
    )
    server.serve()
