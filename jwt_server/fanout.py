"""Wake a worker when the database has committed, so that it reads the outbox.

Nothing is polled and nothing extra runs: on SQLite every commit writes the
database's ``-wal`` file, and inotify tells each worker on this host when
that happens. The worker then reads the outbox rows it has not seen yet
(events.after), so a wake-up that carries nothing costs one indexed query.
"""
import ctypes
import ctypes.util
import os
import select
import struct

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_CREATE = 0x00000100
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_EVENT_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (then the name)

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class CommitWatcher:
    """Blocks in wait() until the SQLite database at ``path`` has had a commit."""

    def __init__(self, path):
        self.wal_name = os.path.basename(path) + "-wal"
        self.fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        # The directory, not the file: SQLite deletes and recreates -wal.
        directory = os.path.dirname(path) or "."
        mask = IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE
        if _libc.inotify_add_watch(self.fd, os.fsencode(directory), mask) < 0:
            error = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(error, f"inotify_add_watch failed on {directory}")

    def wait(self, timeout=None):
        """True once the -wal file has changed (every change so far is consumed); False on timeout."""
        while True:
            ready, _, _ = select.select([self.fd], [], [], timeout)
            if not ready:
                return False
            if self.wal_changed(self.drain()):
                return True

    def drain(self):
        chunks = []
        while True:
            try:
                chunks.append(os.read(self.fd, 65536))
            except BlockingIOError:
                return b"".join(chunks)

    def wal_changed(self, data):
        offset = 0
        while offset + _EVENT_HEADER.size <= len(data):
            _, _, _, length = _EVENT_HEADER.unpack_from(data, offset)
            offset += _EVENT_HEADER.size
            name = data[offset : offset + length].rstrip(b"\0").decode(errors="replace")
            offset += length
            if name == self.wal_name:
                return True
        return False

    def close(self):
        os.close(self.fd)
