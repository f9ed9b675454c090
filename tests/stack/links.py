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
        self.app_closed = False  # during a black hole: the app gave the connection up
        self.server_closed = False  # during a black hole: the server closed; the app hears it on restore

    def abort(self) -> None:
        self.app.transport.abort()
        self.server.transport.abort()


class CuttableLink:
    """A TCP relay from a local port to PostgreSQL, on its own event loop in a thread."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._relayed: set[_Relayed] = set()
        self._writers: list[asyncio.StreamWriter] = []  # every side ever opened, all closed by close()
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
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def _call(self, coroutine) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=5)

    async def _restore(self) -> None:
        self._holding = False
        for relayed in list(self._relayed):
            if relayed.app_closed:  # given up by the app's side: its held data never arrives
                self._forget(relayed)
                continue
            for writer, chunks in relayed.held.items():
                for chunk in chunks:
                    writer.write(chunk)
                chunks.clear()
            if relayed.server_closed:  # what the server said last arrives, then its close
                relayed.app.close()
                self._relayed.discard(relayed)
        if self._server is None:
            self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def _cut(self) -> None:
        self._holding = False
        if self._server is not None:
            self._server.close()
            self._server = None
        for relayed in list(self._relayed):
            self._forget(relayed)

    async def _close(self) -> None:
        await self._cut()
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _black_hole(self) -> None:
        self._holding = True  # still listening: new connections are accepted, and hear nothing

    def _forget(self, relayed: _Relayed) -> None:
        relayed.abort()
        self._relayed.discard(relayed)

    async def _relay(self, app_reader: asyncio.StreamReader, app_writer: asyncio.StreamWriter) -> None:
        self._writers = [writer for writer in self._writers if not writer.transport.is_closing()]
        self._writers.append(app_writer)
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            app_writer.transport.abort()
            return
        self._writers.append(server_writer)
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
        if self._holding and relayed in self._relayed:
            # In a black hole a close travels no further than data does: it waits for restore().
            if from_app:
                relayed.app_closed = True
                relayed.app.transport.abort()
            else:
                relayed.server_closed = True
                relayed.server.transport.abort()
            return
        self._forget(relayed)
