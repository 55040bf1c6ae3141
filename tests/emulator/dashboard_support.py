"""What the dashboard tests share: a private emulator and its worker, the page's tables as
text, and a dashboard form posted as the page's own button would post it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import httpx
from emulator_support import EmulatorProcess, Target, ThreadedServer

TOKEN = re.compile(r'name="token" value="([^"]+)"')


@dataclass
class Served:
    """A private emulator (its dashboard shows this module's queues only) and a worker."""

    emulator: EmulatorProcess
    worker: Target

    @property
    def base_url(self) -> str:
        return f"http://{self.emulator.host}:{self.emulator.http_port}"


def serve(log_dir: Path) -> Iterator[Served]:
    emulator = EmulatorProcess(["--auto-create-queues", "-v"], log_dir)
    try:
        emulator.wait_ready()
        worker = Target(certs_url=emulator.certs_url)
        server = ThreadedServer(worker)
        server.start()
        try:
            yield Served(emulator, worker)
        finally:
            server.stop()
    finally:
        code = emulator.terminate()
        assert code == 0, f"the emulator stopped with {code}:\n{emulator.log()[-4000:]}"


def client(served: Served) -> httpx.Client:
    # trust_env=False: a proxy from the environment must not see loopback calls.
    return httpx.Client(base_url=served.base_url, timeout=10, trust_env=False)


def post_action(http: httpx.Client, action: str, name: str, *, token: str | None = None,
                origin: str | None = None, **headers: str) -> httpx.Response:
    """POST a dashboard form as the page's button does: its own Origin, the page's token."""
    if token is None:
        found = TOKEN.search(http.get("/").text)
        assert found is not None, "the page has no form token"
        token = found.group(1)
    sent = {"Origin": origin or str(http.base_url).rstrip("/"), **headers}
    return http.post(f"/dashboard/actions/{action}", data={"token": token, "name": name},
                     headers=sent)


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._rows: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._cell is not None:
            self._cell.append(" ")  # <dt>name</dt><dd>value</dd> reads "name value"
        if tag == "table":
            self._rows = self.tables.setdefault(dict(attrs).get("id") or "", [])
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("td", "th") and self._rows is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._rows:
            self._rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._rows = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables(html: str) -> dict[str, list[list[str]]]:
    """Each table of the page by its id: its rows (the header row first) as cell texts."""
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def row(html: str, table: str, first_cell: str) -> dict[str, str]:
    """The row whose first cell is `first_cell` in the tables whose id starts with `table`
    (`tasks-` finds it in any queue's), by column header."""
    found = {key: rows for key, rows in tables(html).items() if key.startswith(table)}
    assert found, f"no table {table!r} on the page"
    for rows in found.values():
        for cells in rows[1:]:
            if cells and cells[0] == first_cell:
                return dict(zip(rows[0], cells, strict=False))
    raise AssertionError(f"no row {first_cell!r} in table {table!r}: {found}")
