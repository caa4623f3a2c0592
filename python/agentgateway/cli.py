"""The ``agentgateway`` command: load and check the config, then serve it with granian (ASGI on uvloop)."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import sys
from collections.abc import Callable

from . import __version__
from .app import LOG_FORMAT, LOG_LEVEL_ENV, Gateway
from .config import GatewayConfig, load_config
from .errors import ConfigError
from .reload import SNAPSHOT_ENV, ConfigWatcher, Publisher

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
        "--workers",
        type=int,
        default=usable_cpus(),
        help="worker processes (default: the CPUs this process may use: its affinity and cgroup CPU quota)",
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


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota (v2 ``cpu.max``, v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), rounded up; never less than 1. A container limited to 2 CPUs on
    a 64-core host gets 2 workers, not 64."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        count = min(count, max(1, -(-quota[0] // quota[1])))
    return max(1, count)


def _cgroup_quota(root: str = "/sys/fs/cgroup") -> tuple[int, int] | None:
    """(quota, period) in µs of this process's cgroup, or None when unlimited or unknown."""
    candidates: list[tuple[str, str | None]] = []
    try:
        with open("/proc/self/cgroup", encoding="ascii") as handle:
            for line in handle:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if controllers == "":  # v2: "0::/path"
                    candidates.append((os.path.join(root, path.lstrip("/"), "cpu.max"), None))
                elif "cpu" in controllers.split(","):  # v1
                    for mount in ("cpu,cpuacct", "cpu"):
                        base = os.path.join(root, mount, path.lstrip("/"))
                        candidates.append(
                            (os.path.join(base, "cpu.cfs_quota_us"), os.path.join(base, "cpu.cfs_period_us"))
                        )
    except OSError:
        return None
    # In a container the cgroup path is often "/" while the files sit at the root of the mount: try that too.
    v1 = os.path.join(root, "cpu")
    candidates += [
        (os.path.join(root, "cpu.max"), None),
        (os.path.join(v1, "cpu.cfs_quota_us"), os.path.join(v1, "cpu.cfs_period_us")),
    ]
    for first, second in candidates:
        try:
            with open(first, encoding="ascii") as handle:
                fields = handle.read().split()
            if second is None and len(fields) == 2:  # v2: "max 100000" or "200000 100000"
                return None if fields[0] == "max" else (int(fields[0]), int(fields[1]))
            if second is not None:
                with open(second, encoding="ascii") as handle:
                    period = int(handle.read())
                quota = int(fields[0])
                return None if quota <= 0 or period <= 0 else (quota, period)
        except (OSError, ValueError, IndexError):
            continue
    return None


def _load(args: argparse.Namespace) -> tuple[GatewayConfig, str, str]:
    """The config, its source name and the exact text validated (what the workers are handed)."""
    if args.config is not None:
        return load_config(args.config), "<inline config>", args.config
    if args.file is not None:
        try:
            with open(args.file, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise ConfigError(f"{args.file}: cannot read the config file: {exc.strerror or exc}") from None
        return load_config(text, args.file), args.file, text
    raise ConfigError("no config given: pass -f FILE or -c '<yaml>' (or --demo to try the gateway offline)")


def _validate(text: str, source: str) -> None:
    """What a config must pass, at start-up and at every reload: it loads, and a Gateway can be built from it."""
    Gateway(load_config(text, source), source)


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
        config, source, text = _load(args)
        Gateway(config, source)  # builds the router: a provider that cannot be served is a config error too
    except ConfigError as exc:
        print(f"agentgateway: invalid config\n{exc}", file=sys.stderr)
        return 1

    if args.validate_only:
        print(f"{source}: OK ({len(config.llm.models)} model entries)")
        return 0

    # granian's workers never read the user's file: they read the text validated here from a private snapshot,
    # and follow the generations this process publishes when the file changes (reload.py, OPERATIONS.md 6).
    publisher = Publisher()
    os.environ[SNAPSHOT_ENV] = publisher.directory
    if args.file is not None:
        # The rate-limit table the workers share, made here even when no limit is configured yet: a reload may add
        # one, and the workers must then find their parent's table (policy/shm.py) rather than make their own.
        from .policy.shm import gateway_table

        gateway_table(worker=False)
    watcher: ConfigWatcher | None = None
    if args.file is not None:
        watcher = ConfigWatcher(args.file, text, _validate, publisher)
    else:
        publisher.publish(text, source)
    os.environ[LOG_LEVEL_ENV] = args.log_level.upper()
    port = args.port or config.llm.port or DEFAULT_PORT
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT)
    stop_stats = _start_stats(config, args.workers, watcher)
    try:
        _serve(args.host, port, args.workers, args.drain_timeout, args.log_level, watcher)
    finally:
        if watcher is not None:
            watcher.stop()
        publisher.close()
        stop_stats()
    return 0


def _start_stats(config: GatewayConfig, workers: int, watcher: ConfigWatcher | None) -> Callable[[], None]:
    """The stats and readiness servers, here in the main process: they sum the tables the workers write into a
    directory of their own (telemetry/_table.py), so one scrape sees every worker, respawned ones included.
    ``agentgateway_config_synchronized`` follows the watcher: 0 while the file holds a change that was refused."""
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
    if watcher is not None:

        def synchronized(ok: bool, _generation: int) -> None:
            servers.config_synchronized = 1 if ok else 0

        watcher.listeners.append(synchronized)
    servers.start(None if stats == "off" else stats, None if readiness == "off" else readiness)

    def stop() -> None:
        servers.stop()
        shutil.rmtree(directory, ignore_errors=True)

    return stop


def _serve(
    host: str, port: int, workers: int, drain_timeout: float, log_level: str, watcher: ConfigWatcher | None = None
) -> None:
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

    def on_startup() -> None:
        # After granian set its signal handlers: SIGHUP re-reads the config instead of restarting every worker.
        if watcher is not None:
            watcher.install_sighup()
            watcher.start()
        elif hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: logging.getLogger("agentgateway").info("SIGHUP: no file to reload"))

    server.on_startup(on_startup)
    server.serve()
