"""Checks for the prebuilt wheel and the sdist (issue 9); run by ``tests/wheel/smoke.sh``, not by pytest.

``artifacts WHEEL SDIST``   what the files hold: the abi3 manylinux tag, the stubs, py.typed, the core, the
                            license; an sdist that builds (Cargo.lock, crate sources) and carries no junk.
                            Standard library only: runs under any Python.
``installed``               run inside the fresh virtualenv the wheel was installed into (no Rust toolchain):
                            the metadata ``pip show`` prints, then the installed ``agentgateway --demo`` on a free
                            loopback port, one plain and one streamed completion through the ``openai`` SDK, and
                            SIGTERM ending it with exit code 0.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from email.parser import Parser
from pathlib import Path
from typing import Any

DIST = "agentgateway-llm"
MODEL = "gpt-4o-mini"  # the demo config's first entry (python/agentgateway/demo.yaml)
MANYLINUX_GLIBC = (2, 17)  # manylinux2014
REQUIRED_CLASSIFIERS = {
    "Framework :: AsyncIO",
    "Intended Audience :: Developers",
    "Operating System :: POSIX :: Linux",
    "Programming Language :: Python :: 3.10",
    "Programming Language :: Python :: 3.11",
    "Programming Language :: Python :: 3.12",
    "Programming Language :: Python :: 3.13",
    "Programming Language :: Rust",
    "Topic :: Internet :: WWW/HTTP :: HTTP Servers",
    "Typing :: Typed",
}
PROJECT_URLS = {"Homepage", "Repository", "Issues", "Changelog"}


class CheckFailed(Exception):
    pass


def check(condition: object, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


# --- artifacts ----------------------------------------------------------------------------------------------


def check_wheel(path: Path) -> None:
    arch = platform.machine()
    check(
        f"-cp310-abi3-manylinux2014_{arch}." in path.name or f"-cp310-abi3-manylinux_2_17_{arch}" in path.name,
        f"{path.name}: expected a cp310-abi3 manylinux2014 ({arch}) wheel",
    )
    with zipfile.ZipFile(path) as wheel:
        names = set(wheel.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/WHEEL"))
        tags = {
            line.split(":", 1)[1].strip()
            for line in wheel.read(f"{dist_info}/WHEEL").decode().splitlines()
            if line.startswith("Tag:")
        }
        check(f"cp310-abi3-manylinux_2_17_{arch}" in tags, f"WHEEL tags {sorted(tags)}")
        for needed in (
            "agentgateway/__init__.py",
            "agentgateway/_core.pyi",
            "agentgateway/py.typed",
            "agentgateway/demo.yaml",
            "agentgateway/_core.abi3.so",
            f"{dist_info}/licenses/LICENSE",
            f"{dist_info}/entry_points.txt",
        ):
            check(needed in names, f"{path.name} lacks {needed}")
        check(
            not [n for n in names if n.endswith(".so") and n != "agentgateway/_core.abi3.so"],
            "a version-specific extension beside the abi3 one",
        )
        core = wheel.read("agentgateway/_core.abi3.so")
    # manylinux2014 means glibc 2.17 at most: the highest versioned glibc symbol the core needs tells.
    glibc = max((tuple(int(p) for p in m.groups()) for m in re.finditer(rb"GLIBC_(\d+)\.(\d+)", core)), default=(0, 0))
    check(glibc <= MANYLINUX_GLIBC, f"_core needs GLIBC_{glibc[0]}.{glibc[1]}, above manylinux2014's 2.17")
    print(f"ok  wheel {path.name}: tags {', '.join(sorted(tags))}; core needs glibc {glibc[0]}.{glibc[1]}")


def check_sdist(path: Path) -> None:
    with tarfile.open(path) as sdist:
        names = sdist.getnames()
    root = names[0].split("/")[0]
    inside = {n.removeprefix(root + "/") for n in names}
    for needed in (
        "pyproject.toml",
        "PKG-INFO",
        "Cargo.toml",
        "Cargo.lock",
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "rust/sse_core/Cargo.toml",
        "rust/sse_core/src/lib.rs",
        "python/agentgateway/__init__.py",
        "python/agentgateway/_core.pyi",
        "python/agentgateway/py.typed",
        "python/agentgateway/demo.yaml",
    ):
        check(needed in inside, f"{path.name} lacks {needed}")
    junk = re.compile(r"(^|/)(node_modules|target|__pycache__|\.git|\.venv|dist|\.benchmarks)(/|$)|\.(so|pyc|pyd)$")
    bad = sorted(n for n in inside if junk.search(n))
    check(not bad, f"{path.name} carries build or dev junk: {bad[:10]}")
    print(f"ok  sdist {path.name}: {len(inside)} entries, Cargo.lock and crate sources in, no junk")


# --- installed ----------------------------------------------------------------------------------------------


def check_metadata() -> None:
    from importlib import metadata

    import agentgateway
    from agentgateway import _core

    prefix = Path(sys.prefix).resolve()
    check(prefix in Path(agentgateway.__file__).resolve().parents, f"imported from {agentgateway.__file__}")
    check(str(_core.__file__).endswith(".abi3.so"), f"the core is {_core.__file__}")

    meta = metadata.metadata(DIST)
    check(meta["Version"] == agentgateway.__version__, f"version {meta['Version']} != {agentgateway.__version__}")
    for field in ("Summary", "Author", "Keywords", "Requires-Python", "Description-Content-Type"):
        check(meta.get(field), f"metadata lacks {field}")
    check(meta["Requires-Python"] == ">=3.10", f"Requires-Python {meta['Requires-Python']}")
    check(meta.get("License-Expression") == "Apache-2.0", f"License-Expression {meta.get('License-Expression')!r}")
    check("LICENSE" in (meta.get_all("License-File") or []), "no License-File")
    classifiers = set(meta.get_all("Classifier") or [])
    check(classifiers >= REQUIRED_CLASSIFIERS, f"missing classifiers {sorted(REQUIRED_CLASSIFIERS - classifiers)}")
    check(not [c for c in classifiers if c.startswith("License ::")], "a License classifier beside License-Expression")
    urls = {u.split(",", 1)[0].strip() for u in meta.get_all("Project-URL") or []}
    check(urls >= PROJECT_URLS, f"missing project URLs {sorted(PROJECT_URLS - urls)}")

    shown = subprocess.run(
        [sys.executable, "-m", "pip", "show", "--verbose", DIST], capture_output=True, text=True, check=True
    ).stdout
    fields = Parser().parsestr(shown)
    for field in ("Name", "Version", "Summary", "Home-page", "Author", "License-Expression", "Location", "Requires"):
        check(fields.get(field, "").strip(), f"pip show: {field} is empty\n{shown}")
    for section in ("Classifiers:", "Entry-points:", "Project-URLs:"):
        check(section in shown, f"pip show -v: no {section}\n{shown}")
    print(f"ok  metadata: {meta['Name']} {meta['Version']}, {meta['License-Expression']}, classifiers, URLs")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(process: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check(process.poll() is None, f"the gateway exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise CheckFailed(f"the gateway was not ready within {timeout:.0f} s:\n{log.read_text()}")


def talk(url: str) -> None:
    from openai import OpenAI

    prompt = "Hello from the wheel smoke test"
    expected = f"Hello from the agentgateway demo upstream! You said: {prompt}"
    messages: Any = [{"role": "user", "content": prompt}]
    with OpenAI(base_url=url, api_key="sk-wheel-smoke", max_retries=0, timeout=30) as client:
        models = [m.id for m in client.models.list()]
        check(MODEL in models, f"/models lists {models}")

        completion = client.chat.completions.create(model=MODEL, messages=messages)
        content = completion.choices[0].message.content
        check(content == expected, f"plain completion said {content!r}")
        check(completion.model == MODEL, f"plain completion reports model {completion.model!r}")
        check(completion.usage and completion.usage.total_tokens > 0, f"plain usage {completion.usage}")
        print(f"ok  plain completion: {content!r}")

        parts: list[str] = []
        finish = None
        usage = None
        for chunk in client.chat.completions.create(
            model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
        ):
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                parts.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
        streamed = "".join(parts)
        check(streamed == expected, f"streamed completion said {streamed!r}")
        check(len([p for p in parts if p]) > 1, f"the answer came in one piece, not streamed: {parts}")
        check(finish == "stop", f"stream finish_reason {finish!r}")
        check(usage is not None and usage.total_tokens > 0, f"stream usage {usage}")
        print(f"ok  streamed completion: {len([p for p in parts if p])} content chunks, finish_reason=stop")


def run_gateway(args: argparse.Namespace) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(args.log)
    command = [args.agentgateway, "--demo", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with log.open("wb") as out:
        # Its own session, so that whatever it started can be killed as a group; the shell's trap uses the pid
        # file if this process itself dies.
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    Path(args.pidfile).write_text(str(process.pid))
    try:
        wait_ready(process, url, log)
        print(f"ok  {' '.join(command[1:])}: ready on {url}")
        talk(url)
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            raise CheckFailed(f"the gateway did not exit within 30 s of SIGTERM:\n{log.read_text()}") from None
        check(code == 0, f"the gateway exited with {code} after SIGTERM:\n{log.read_text()}")
        print("ok  SIGTERM: the gateway exited with 0")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    artifacts = commands.add_parser("artifacts")
    artifacts.add_argument("wheel", type=Path)
    artifacts.add_argument("sdist", type=Path)
    installed = commands.add_parser("installed")
    installed.add_argument("--agentgateway", required=True, help="the installed command")
    installed.add_argument("--log", required=True, help="where the gateway's output goes")
    installed.add_argument("--pidfile", required=True, help="where the gateway's pid goes (for the shell's trap)")
    args = parser.parse_args()
    try:
        if args.command == "artifacts":
            check_wheel(args.wheel)
            check_sdist(args.sdist)
        else:
            check_metadata()
            run_gateway(args)
    except CheckFailed as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
