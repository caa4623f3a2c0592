"""Live config changes (OPERATIONS.md section 6, issue 16).

The main process (granian's supervisor, where ``agentgateway`` runs) is the only one that reads the user's file.
`ConfigWatcher` polls it (``stat``, twice a second, and at once on ``SIGHUP``), validates a change exactly as the
start-up does, and publishes the validated text into a private snapshot directory (`Publisher`): the document in
``config.yaml`` (written whole, then renamed into place) and a 16-byte control file the workers map, holding the
generation number and whether the last change was accepted. A change that does not validate keeps the last good
document in place, is logged once as ``file:line: path: problem`` and clears the ``ok`` flag.

Each worker (`Follower`) maps the control file and checks the generation from one asyncio task, four times a
second -- never per request. A new generation is read from the snapshot (never the user's file, which may have
changed again since), its hash checked, and handed to ``Gateway.reconfigure``, which builds a new Router that
reuses the Backend of every unchanged model entry (`reusable`), so its provider (credential caches), health
(eviction state) and, through the UpstreamClient the Gateway keeps, its connection pools carry over. The router is
swapped between requests; a request keeps the route it was given. A worker that granian (re)starts reads the
snapshot's current document, so it serves what was last validated.

Files the config refers to -- ``params.apiKey: {file}`` and inbound ``keys[].key: {file}`` secrets, a
``modelCatalog`` file -- are part of what is validated: the watcher watches them beside the config file (a new
secret in a Kubernetes Secret volume, nothing else edited, is a change), SIGHUP reads them again, and the snapshot
carries the contents validated, which workers load instead of reading the files themselves.

The rest of ``config:`` changes live too (``Telemetry.reconfigure``: logging format, level and fields, metrics
fields, tracing, the catalog). What the main process bound at start-up does not: a change of ``statsAddr``,
``readinessAddr`` or the serving port is logged once as a warning that a restart is needed; the rest of that
change is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import mmap
import os
import shutil
import signal
import struct
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from .errors import ConfigError

if TYPE_CHECKING:
    from .app import Gateway
    from .backend import Backend
    from .config import GatewayConfig, ModelEntry

__all__ = [
    "POLL_INTERVAL",
    "SNAPSHOT_ENV",
    "WATCH_INTERVAL",
    "ConfigWatcher",
    "Document",
    "Follower",
    "Publisher",
    "follow",
    "restart_needed",
    "reusable",
]

logger = logging.getLogger("agentgateway")

#: The environment variable through which the CLI hands workers the snapshot directory.
SNAPSHOT_ENV = "AGENTGATEWAY_CONFIG_SNAPSHOT"
#: How often the main process looks at the user's file (seconds).
WATCH_INTERVAL = 0.5
#: How often each worker looks at the published generation (seconds). Together: a change is served within ~1 s.
POLL_INTERVAL = 0.25

_CONTROL = "control"
_DOCUMENT = "config.yaml"
# generation (u64), ok (u8), padding: one aligned 8-byte word is written last, so a reader sees either generation.
_CONTROL_FORMAT = struct.Struct("<QB7x")


#: Files a config refers to: path -> the text validated.
Files = dict[str, str]


@dataclass(frozen=True, slots=True)
class Document:
    """One validated config: the text exactly as validated, where it came from, its generation, and the files it
    refers to as they were validated (None: published without them, the files are read where it is loaded)."""

    generation: int
    source: str
    text: str
    files: Files | None = None

    def load(self) -> GatewayConfig:
        """The config, its files taken from the document, never from the disk (a file may have changed since)."""
        from .config import load_config, reading_files

        with reading_files(self.files):
            return load_config(self.text, self.source)


def _digest(text: str, files: Mapping[str, str | None] | None = None) -> str:
    digest = hashlib.sha256(text.encode("utf-8"))
    for path, content in sorted((files or {}).items()):
        digest.update(b"\0" + path.encode("utf-8", "surrogateescape") + b"\0")
        digest.update(b"\1" if content is None else b"\2" + content.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


class Publisher:
    """The main process's side of the snapshot directory (private: 0700, files 0600; the text may hold keys)."""

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory or tempfile.mkdtemp(prefix="agentgateway-config-")
        os.chmod(self.directory, 0o700)
        self.generation = 0
        self.ok = True
        control = os.path.join(self.directory, _CONTROL)
        fd = os.open(control, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, _CONTROL_FORMAT.size)
            self._control = mmap.mmap(fd, _CONTROL_FORMAT.size)
        finally:
            os.close(fd)

    def publish(self, text: str, source: str, files: Files | None = None) -> int:
        """Makes ``text`` (validated, with the ``files`` it refers to) the current document; returns its
        generation."""
        generation = self.generation + 1
        header = orjson.dumps(
            {"generation": generation, "source": source, "sha256": _digest(text, files), "files": files}
        )
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".config-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(header + b"\n" + text.encode("utf-8"))
            os.replace(temporary, os.path.join(self.directory, _DOCUMENT))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        self.generation = generation
        self.ok = True
        self._write()
        return generation

    def refused(self) -> None:
        """The last change was refused: the document stays, the flag says so."""
        self.ok = False
        self._write()

    def _write(self) -> None:
        _CONTROL_FORMAT.pack_into(self._control, 0, self.generation, 1 if self.ok else 0)

    def close(self) -> None:
        with contextlib.suppress(ValueError, BufferError):
            self._control.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class Follower:
    """A worker's side: the generation from the shared control word, the document from the snapshot."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        with open(os.path.join(directory, _CONTROL), "rb") as handle:
            self._control = mmap.mmap(handle.fileno(), _CONTROL_FORMAT.size, access=mmap.ACCESS_READ)

    def generation(self) -> int:
        """The generation last published (one read of shared memory)."""
        generation: int = _CONTROL_FORMAT.unpack_from(self._control, 0)[0]
        return generation

    def ok(self) -> bool:
        """Whether the main process accepted the last change it saw."""
        return bool(_CONTROL_FORMAT.unpack_from(self._control, 0)[1])

    def current(self) -> Document:
        """The current validated document (its hash checked)."""
        path = os.path.join(self.directory, _DOCUMENT)
        try:
            with open(path, "rb") as handle:
                header, _, body = handle.read().partition(b"\n")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the gateway's config snapshot: {exc.strerror or exc}") from None
        meta = orjson.loads(header)
        text = body.decode("utf-8")
        files = meta.get("files")
        if _digest(text, files) != meta["sha256"]:
            raise ConfigError(f"{path}: the config snapshot does not match its hash")
        return Document(int(meta["generation"]), str(meta["source"]), text, files)

    def close(self) -> None:
        with contextlib.suppress(ValueError, BufferError):
            self._control.close()


#: ``validate(text, source)`` raises ConfigError for a config the gateway cannot serve.
Validate = Callable[[str, str], Any]
#: Told ``(ok, generation)`` after every change the watcher looked at (the metrics' config_synchronized gauge).
Listener = Callable[[bool, int], None]


class ConfigWatcher:
    """In the main process: watches the config file and the files it refers to, validates each change, publishes
    the good ones.

    ``generation`` and ``ok`` are the hook for ``agentgateway_config_synchronized``; ``listeners`` are called after
    each change looked at (from the watcher's thread)."""

    def __init__(self, path: str, text: str, validate: Validate, publisher: Publisher) -> None:
        from .config import reading_files

        self.path = path
        self.validate = validate
        self.publisher = publisher
        self.listeners: list[Listener] = []
        # The start-up config once more, to learn the files it reads (the CLI validated it a moment ago).
        config: GatewayConfig | None = None
        # (A file that changed in that moment: published without the files, the next look settles it.)
        with reading_files() as read, contextlib.suppress(ConfigError):
            config = _loaded(text, path)
        files = _present(read) if config is not None else None
        publisher.publish(text, path, files)
        #: the files of the document published last (published again when the file changes back to it)
        self.publisher_files: Files | None = files
        #: the config served (restart_needed compares with it) and the addresses bound at start-up
        self._config = config
        self._bound = _bound_settings(config) if config is not None else {}
        if config is not None:
            _apply_main_settings(config)
        #: the files the last config looked at read (a refused one included): watched with the config file
        self._files: list[str] = sorted(read)
        self._good = _digest(text, dict(read))
        self._refused: str | None = None  # the change last refused: logged once, not again each poll
        self._stat = self._signature()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def generation(self) -> int:
        return self.publisher.generation

    @property
    def ok(self) -> bool:
        return self.publisher.ok

    @property
    def files(self) -> list[str]:
        """The files watched beside the config file."""
        return list(self._files)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="agentgateway-config-watch", daemon=True)
        self._thread.start()

    def install_sighup(self) -> None:
        """SIGHUP: look at the file now (granian's own SIGHUP handler would restart every worker instead, losing
        pools, credentials and eviction state). Call after granian installed its handlers."""
        if hasattr(signal, "SIGHUP"):  # not on Windows
            signal.signal(signal.SIGHUP, lambda _signum, _frame: self.trigger())

    def trigger(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)

    def _signature(self) -> tuple[tuple[int, int, int, int] | None, ...]:
        return tuple(_stat(path) for path in (self.path, *self._files))

    def _run(self) -> None:
        while not self._stop.is_set():
            forced = self._wake.wait(WATCH_INTERVAL)
            self._wake.clear()
            if self._stop.is_set():
                return
            signature = self._signature()
            if not forced and signature == self._stat:
                continue
            # Taken before the files are read, so that a write during the check is seen at the next poll. When the
            # check changes which files are watched, the next poll's signature differs and looks once more.
            self._stat = signature
            try:
                self.check(forced=forced)
            except Exception:  # the watcher must outlive any bug of ours
                logger.exception("checking %s for changes failed", self.path)

    def check(self, *, forced: bool = False) -> None:
        """Reads the file and the files it refers to once; publishes them when they changed and validate."""
        from .config import reading_files

        try:
            with open(self.path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            self._refuse(f"{self.path}: cannot read the config file: {exc.strerror or exc}", f"oserror:{exc.errno}")
            return
        digest = _digest(text, {path: _read(path) for path in self._files})
        if digest == self._good:
            if not self.publisher.ok:  # changed back to the config being served
                self.publisher.publish(text, self.path, self.publisher_files)
                self._refused = None
                logger.info("config %s is the one served again (generation %d)", self.path, self.generation)
                self._tell()
            elif forced:
                logger.info("config %s unchanged (generation %d)", self.path, self.generation)
            return
        if digest == self._refused:
            return
        with reading_files() as read:
            try:
                config = self.validate(text, self.path)
            except ConfigError as exc:
                self._files = sorted(read)
                self._refuse(str(exc), _digest(text, dict(read)))
                return
        self._files = sorted(read)
        files = _present(read)
        if not _is_config(config):
            with reading_files(files):
                config = _loaded(text, self.path)
        generation = self.publisher.publish(text, self.path, files)
        self.publisher_files = files
        self._good = _digest(text, dict(read))
        self._refused = None
        logger.info("config %s changed: generation %d published to the workers", self.path, generation)
        for line in restart_needed(self._bound, self._config, config):
            logger.warning("config %s: %s", self.path, line)
        self._config = config
        _apply_main_settings(config)
        self._tell()

    def _refuse(self, problem: str, key: str) -> None:
        if key == self._refused:
            return
        self._refused = key
        self.publisher.refused()
        # The problem lines are ConfigError's "file:line: path: problem"; values of secrets never appear in them.
        logger.error("config change refused, still serving generation %d:\n%s", self.publisher.generation, problem)
        self._tell()

    def _tell(self) -> None:
        for listener in self.listeners:
            try:
                listener(self.publisher.ok, self.publisher.generation)
            except Exception:
                logger.exception("a config listener failed")


def _stat(path: str) -> tuple[int, int, int, int] | None:
    try:
        # stat follows symlinks: a Kubernetes ConfigMap's or Secret's ..data swap changes the inode seen here.
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def _present(read: dict[str, str | None]) -> Files:
    return {path: text for path, text in read.items() if text is not None}


def _is_config(value: Any) -> bool:
    from .config import GatewayConfig

    return isinstance(value, GatewayConfig)


def _loaded(text: str, source: str) -> GatewayConfig:
    from .config import load_config

    return load_config(text, source)


def _bound_settings(config: GatewayConfig) -> dict[str, str]:
    """What the main process bound at start-up from ``config``, by the config key that sets it (environment
    variables win over the config: then a change of the key changes nothing)."""
    from .telemetry import stats_address

    settings = {
        "config.statsAddr": stats_address(config),
        "config.readinessAddr": os.environ.get("READINESS_ADDR") or config.config.readiness_addr,
    }
    if config.llm.port is not None:
        settings["llm.port"] = str(config.llm.port)
    return settings


def restart_needed(bound: dict[str, str], old: GatewayConfig | None, new: GatewayConfig) -> list[str]:
    """One line for each setting that only a restart applies and that ``new`` changes from ``old``: the
    addresses the main process listens on (``bound``: what it bound at start-up)."""
    if old is None:
        return []
    before, after = _bound_settings(old), _bound_settings(new)
    lines = []
    for key in ("config.statsAddr", "config.readinessAddr", "llm.port"):
        was, now = before.get(key), after.get(key)
        if was == now:
            continue
        listening = bound.get(key, "its start-up value")
        if now == bound.get(key):
            lines.append(f"{key} is {now} again: the address the gateway listens on")
            continue
        what = "the serving port (--port, when given, wins)" if key == "llm.port" else "this address"
        lines.append(
            f"{key} changed to {now or 'its default'}, which needs a restart: the gateway keeps listening on "
            f"{listening} until it is restarted ({what} is bound at start-up); the rest of the change is served"
        )
    return lines


def _apply_main_settings(config: GatewayConfig) -> None:
    """The main process's own part of ``config:``: the level of its log (the workers apply theirs)."""
    from .config import parse_log_level
    from .telemetry import apply_log_level

    apply_log_level(parse_log_level(config.config.logging.level)[0])


def reusable(old: Sequence[Backend]) -> Callable[[ModelEntry], Backend | None]:
    """For a Router being built: the old Backend for an entry equal to the new one (pydantic compares by value,
    secrets included), each old Backend given out once. Its provider (credential caches) and health carry over."""
    pool: list[Backend] = list(old)

    def take(entry: ModelEntry) -> Backend | None:
        for index, backend in enumerate(pool):
            if backend.entry == entry:
                del pool[index]
                return backend
        return None

    return take


async def follow(gateway: Gateway, follower: Follower) -> None:
    """A worker's one task: every POLL_INTERVAL, one read of the shared generation; a new one is loaded from the
    snapshot and handed to ``gateway.reconfigure``. Nothing of this runs per request."""
    applied = gateway.config_generation
    while True:
        await asyncio.sleep(POLL_INTERVAL)
        generation = follower.generation()
        if generation == applied:
            gateway.config_ok = follower.ok()
            continue
        applied = generation
        try:
            document = follower.current()
            # Parsing and validating is pure: off the event loop. Building the router is not (it makes the
            # providers' asyncio locks), and is quick: on it.
            config = await asyncio.to_thread(document.load)
            before = {id(backend) for backend in gateway.router.backends}
            await gateway.reconfigure(config, document.source, document.generation)
        except Exception as exc:
            # Validated by the main process, so this is a bug or a worker-local failure (e.g. a JWKS fetch).
            gateway.config_ok = False
            logger.error("worker %d could not apply config generation %d: %s", os.getpid(), generation, exc)
            continue
        applied = document.generation
        gateway.config_ok = follower.ok()
        kept = sum(1 for backend in gateway.router.backends if id(backend) in before)
        logger.info(
            "worker %d serves config generation %d (%d model entries kept, %d new)",
            os.getpid(),
            document.generation,
            kept,
            len(gateway.router.backends) - kept,
        )
