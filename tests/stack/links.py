"""A TCP link between the API and PostgreSQL that the stack tests can cut, or turn into a black hole.

cut(): every relayed connection dropped, new ones refused, as when PostgreSQL stops. black_hole():
nothing gets through either way and nothing is refused, as when packets are dropped on the way (a
firewall, a dead switch): what the app sends is held, as a kernel holds data it retransmits. On
restore(), what was held is delivered on the connections the app still has open, and the others are
reset, as the app's kernel gives a connection up once its data stays unacknowledged
(tcp_user_timeout; the black holes the tests make are longer than it).
"""

import asyncio
import threading

from scripts.local_stack import free_port


class _Relayed:
    """One relayed connection: the app's side, the server's side, and what is held for each."""

    def __init__(self, app: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.app, self.server = app, server
        self.held: dict[asyncio.StreamWriter, list[bytes]] = {app: [], server: []}
        self.app_closed = False


class CuttableLink:
    """A TCP relay from a local port to PostgreSQL, on its own event loop in a thread."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._relayed: set[_Relayed] = set()
        self._holding = False

    def start(self) -> None:
        self._thread.start()
        self.restore()

    def restore(self) -> None:
        self._call(self._restore())

    def cut(self) -> None:
        self._call(self._cut())

    def black_hole(self) -> None:
        self._call(self._black_hole())

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def _call(self, coroutine) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=5)

    async def _restore(self) -> None:
        self._holding = False
        for relayed in list(self._relayed):
            if relayed.app_closed:  # given up by the app's side: its held data never arrives
                relayed.server.transport.abort()
                self._relayed.discard(relayed)
                continue
            for writer, chunks in relayed.held.items():
                for chunk in chunks:
                    writer.write(chunk)
                chunks.clear()
        if self._server is None:
            self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def _cut(self) -> None:
        self._holding = False
        if self._server is not None:
            self._server.close()
            self._server = None
        for relayed in list(self._relayed):
            relayed.app.transport.abort()
            relayed.server.transport.abort()
        self._relayed.clear()

    async def _black_hole(self) -> None:
        self._holding = True  # still listening: new connections are accepted, and hear nothing

    async def _relay(self, app_reader: asyncio.StreamReader, app_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            app_writer.transport.abort()
            return
        relayed = _Relayed(app_writer, server_writer)
        self._relayed.add(relayed)
        await asyncio.gather(
            self._pipe(app_reader, server_writer, relayed, from_app=True),
            self._pipe(server_reader, app_writer, relayed, from_app=False),
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, relayed: _Relayed, *, from_app: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if self._holding:
                    relayed.held[writer].append(data)
                    continue
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        if from_app and self._holding:
            relayed.app_closed = True  # the app closed its side during the black hole
            return
        writer.transport.abort()
        self._relayed.discard(relayed)
