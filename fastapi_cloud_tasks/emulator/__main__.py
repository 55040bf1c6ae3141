"""python -m fastapi_cloud_tasks.emulator [--host 127.0.0.1] [--port 8123] [--queue ...]

Once serving it prints `READY HOST:PORT http=HTTP_PORT`, then the `export` lines that point an
app's builders without `client=` at it (CLOUD_TASKS_EMULATOR_HOST, CLOUD_SCHEDULER_EMULATOR_HOST).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
from datetime import timedelta
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlsplit

from google.api_core import exceptions
from google.cloud import tasks_v2

from fastapi_cloud_tasks.clients import SCHEDULER_EMULATOR_HOST_ENV, TASKS_EMULATOR_HOST_ENV
from fastapi_cloud_tasks.emulator import missing_extra_message
from fastapi_cloud_tasks.emulator.connection_limits import Limits
from fastapi_cloud_tasks.emulator.http_limits import HTTP_LIMITS
from fastapi_cloud_tasks.exceptions import FastAPICloudTasksError

if TYPE_CHECKING:
    from fastapi_cloud_tasks.emulator.server import Emulator

QUEUE_SETTINGS = {
    "rate": ("rate_limits", "max_dispatches_per_second", float),
    "concurrent": ("rate_limits", "max_concurrent_dispatches", int),
    "max_attempts": ("retry_config", "max_attempts", int),
    "min_backoff": ("retry_config", "min_backoff", float),
    "max_backoff": ("retry_config", "max_backoff", float),
    "max_doublings": ("retry_config", "max_doublings", int),
    "max_retry_duration": ("retry_config", "max_retry_duration", float),
}


_KIND_NAMES = {int: "a whole number", float: "a number"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, not argparse's usage block: the mistake and where the usage is."""
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


def parse_queue(text: str) -> tasks_v2.Queue:
    """`projects/P/locations/L/queues/Q[,rate=10,max_attempts=5,min_backoff=1,...]`"""
    name, *settings = text.split(",")
    queue = tasks_v2.Queue(name=name)
    for setting in settings:
        key, _, value = setting.partition("=")
        if key not in QUEUE_SETTINGS or not value:
            raise argparse.ArgumentTypeError(
                f"queue setting {setting!r}: use key=value with key one of "
                f"{', '.join(QUEUE_SETTINGS)}"
            )
        section, field, kind = QUEUE_SETTINGS[key]
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"queue setting {setting!r}: {value!r} is not {_KIND_NAMES[kind]}"
            ) from None
        if field.endswith(("backoff", "duration")):
            number = timedelta(seconds=number)
        setattr(getattr(queue, section), field, number)
    return queue


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(
        prog="python -m fastapi_cloud_tasks.emulator",
        description="Local Cloud Tasks and Cloud Scheduler for Google's own clients (gRPC "
                    "and REST).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8123,
                        help="gRPC port (default 8123; 0: any free port)")
    parser.add_argument("--http-port", type=int, default=None,
                        help="port for REST and the token certificates (default: gRPC port + 1)")
    parser.add_argument("--queue", action="append", type=parse_queue, default=[],
                        metavar="PATH[,key=value...]",
                        help="create a queue at start, e.g. projects/p/locations/l/queues/q,"
                        "rate=10,max_attempts=5 (keys: " + ", ".join(QUEUE_SETTINGS) + ")")
    parser.add_argument("--auto-create-queues", action="store_true",
                        help="let CreateTask into a queue nobody created create it with the "
                        "defaults; by default it is NOT_FOUND, as on Google (the library's "
                        ".delay() creates its queue first unless auto_create_queue=False)")
    parser.add_argument("--max-rate", type=float, default=500.0,
                        help="highest max_dispatches_per_second accepted (Google: 500)")
    parser.add_argument("--max-in-flight", type=int, default=64, metavar="N",
                        help="requests open at once across all queues, on top of each queue's "
                        "max_concurrent_dispatches (default 64: past a few dozen, a local "
                        "worker only slows down; raise it for many slow handlers)")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="answer REST requests addressed to NAME too (repeatable), e.g. a "
                        "docker compose service name; by default only localhost, a loopback "
                        "address or the --host address, so that no web page can reach it "
                        "through DNS rebinding")
    limits = Limits()
    parser.add_argument("--grpc-max-connections", type=int, default=limits.max_connections,
                        metavar="N", help="gRPC connections open at once; one more is refused "
                        f"at once with GOAWAY (default {limits.max_connections})")
    parser.add_argument("--grpc-idle-timeout", type=float, default=limits.idle_timeout,
                        metavar="S", help="close a gRPC connection with no call open and "
                        f"nothing received for S seconds (default {limits.idle_timeout:g})")
    parser.add_argument("--grpc-head-timeout", type=float, default=limits.head_timeout,
                        metavar="S", help="close a gRPC connection whose frame, header block "
                        f"or preface is not whole S seconds after it began (default "
                        f"{limits.head_timeout:g})")
    parser.add_argument("--grpc-body-timeout", type=float, default=limits.body_timeout,
                        metavar="S", help="refuse a gRPC request not whole S seconds after its "
                        f"headers (default {limits.body_timeout:g})")
    http = HTTP_LIMITS
    parser.add_argument("--http-max-connections", type=int, default=http.max_connections,
                        metavar="N", help="REST connections open at once; past them the one "
                        "idle longest (for a second at least) is closed, or the new one waits "
                        "for room up to --http-head-timeout, then gets a 503 (default "
                        f"{http.max_connections})")
    parser.add_argument("--http-idle-timeout", type=float, default=http.idle_timeout,
                        metavar="S", help="close a kept-alive REST connection with no request "
                        f"for S seconds (default {http.idle_timeout:g})")
    parser.add_argument("--http-head-timeout", type=float, default=http.head_timeout,
                        metavar="S", help="close a REST connection whose request head is not "
                        f"whole S seconds after its first byte, with 408 (default "
                        f"{http.head_timeout:g})")
    parser.add_argument("--http-body-timeout", type=float, default=http.body_timeout,
                        metavar="S", help="the same for a request body, from its head's end, "
                        f"and for an answer the client does not read (default "
                        f"{http.body_timeout:g})")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="keep queues, tasks and jobs in DIR (created if missing) and take "
                        "them back at the next start, after SIGTERM or kill -9 alike; by default "
                        "they live in memory and are gone at exit")
    parser.add_argument("--app-engine-host", metavar="HOST:PORT", type=_host_port,
                        help="deliver App Engine tasks (Task.app_engine_http_request) to "
                        "http://HOST:PORT + their relative URI, the local server standing in "
                        "for your App Engine app; without it they are refused at create")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every delivery")
    parser.add_argument("-q", "--quiet", action="store_true", help="log errors only")
    args = parser.parse_args(argv)
    level = logging.ERROR if args.quiet else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(message)s")
    if args.max_in_flight < 1:
        parser.error(f"--max-in-flight {args.max_in_flight}: give 1 or more")
    try:
        grpc_limits = Limits(max_connections=args.grpc_max_connections,
                             idle_timeout=args.grpc_idle_timeout,
                             head_timeout=args.grpc_head_timeout,
                             body_timeout=args.grpc_body_timeout)
    except ValueError as exc:
        parser.error(f"--grpc-{str(exc).replace('_', '-')}")
    try:
        http_limits = dataclasses.replace(
            HTTP_LIMITS, max_connections=args.http_max_connections,
            idle_timeout=args.http_idle_timeout, head_timeout=args.http_head_timeout,
            body_timeout=args.http_body_timeout)
    except ValueError as exc:
        parser.error(f"--http-{str(exc).replace('_', '-')}")
    try:
        from fastapi_cloud_tasks.emulator.server import Emulator
    except ModuleNotFoundError as exc:
        message = missing_extra_message(exc)
        if message is None:
            raise
        print(f"{parser.prog}: {message}", file=sys.stderr)
        return 1
    try:
        emulator = Emulator(args.host, args.port, http_port=args.http_port, queues=args.queue,
                            auto_create_queues=args.auto_create_queues,
                            max_rate=args.max_rate, max_in_flight=args.max_in_flight,
                            allowed_hosts=args.allow_host, grpc_limits=grpc_limits,
                            data_dir=args.data_dir, app_engine_host=args.app_engine_host,
                            http_limits=http_limits)
    except exceptions.InvalidArgument as exc:  # a --queue the engine refuses, as Google would
        parser.error(f"--queue: {exc.message}")
    except FastAPICloudTasksError as exc:  # persistence.StateError: --data-dir unusable
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 1
    return asyncio.run(_serve(emulator, parser.prog))


def ready_text(emulator: Emulator) -> str:
    """The READY line (parsed by scripts: keep it first and its shape fixed), then the lines a
    user copies into the shell that runs the app."""
    # Bound to every address: the app connects to loopback. An IPv6 literal is bracketed.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(emulator.host, emulator.host)
    address = f"[{host}]:{emulator.port}" if ":" in host else f"{host}:{emulator.port}"
    return "\n".join([
        f"READY {emulator.host}:{emulator.port} http={emulator.http_port}",
        f"export {TASKS_EMULATOR_HOST_ENV}={address}",
        f"export {SCHEDULER_EMULATOR_HOST_ENV}={address}",
    ])


async def _serve(emulator: Emulator, prog: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await emulator.start()
    except OSError as exc:  # most often a port in use: one line, no traceback; the process
        # exits at once, closing whatever did start
        print(f"{prog}: {exc.strerror or exc}. Pick free ports with --port and --http-port "
              "(0: any free port).", file=sys.stderr)
        return 1
    print(ready_text(emulator), flush=True)
    await stop.wait()
    await emulator.stop()
    return 0


def _host_port(value: str) -> str:
    """`--app-engine-host`: HOST:PORT, nothing more (no scheme, no path)."""
    try:
        parts = urlsplit(f"http://{value}")
        good = bool(parts.hostname) and parts.port is not None and not (
            parts.path or parts.query or parts.fragment or "@" in value)
    except ValueError:  # a bad port number or IPv6 literal
        good = False
    if not good:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not HOST:PORT: give the App Engine app's local address, such as "
            "127.0.0.1:8080 (no scheme, no path)."
        )
    return value


if __name__ == "__main__":
    sys.exit(main())

