"""A bounds-checked cursor over bytes, used by every decoder of the core.

Each read names the field it reads, so a short or bad buffer produces a LispDecodeError that
says which field and which offset, and never an IndexError or struct.error.
"""
import struct

from .errors import LispDecodeError, LispEncodeError

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")


class Reader:
    __slots__ = ("data", "pos", "end", "context")

    def __init__(self, data, pos=0, end=None, context=""):
        self.data = bytes(data) if not isinstance(data, bytes) else data
        self.pos = pos
        self.end = len(self.data) if end is None else end
        self.context = context

    def fail(self, field, reason, offset=None):
        name = f"{self.context}.{field}" if self.context else field
        raise LispDecodeError(name, self.pos if offset is None else offset, reason)

    def need(self, n, field):
        if self.pos + n > self.end:
            self.fail(field, f"needs {n} byte(s), {self.end - self.pos} left")

    def u8(self, field):
        self.need(1, field)
        v = self.data[self.pos]
        self.pos += 1
        return v

    def u16(self, field):
        self.need(2, field)
        v = _U16.unpack_from(self.data, self.pos)[0]
        self.pos += 2
        return v

    def u32(self, field):
        self.need(4, field)
        v = _U32.unpack_from(self.data, self.pos)[0]
        self.pos += 4
        return v

    def u64(self, field):
        self.need(8, field)
        v = _U64.unpack_from(self.data, self.pos)[0]
        self.pos += 8
        return v

    def take(self, n, field):
        self.need(n, field)
        v = self.data[self.pos:self.pos + n]
        self.pos += n
        return v

    def remaining(self):
        return self.end - self.pos

    def done(self, what):
        """Insist that the message ends here: trailing bytes are an error, not ignored."""
        if self.pos != self.end:
            self.fail(what, f"{self.end - self.pos} unexpected trailing byte(s)")

    def sub(self, length, field, context=None):
        """A reader over the next `length` bytes (for length-prefixed structures)."""
        self.need(length, field)
        r = Reader(self.data, self.pos, self.pos + length,
                   self.context if context is None else context)
        self.pos += length
        return r


def check_range(value, bits, name):
    """Raise LispEncodeError unless 0 <= value < 2**bits."""
    if not isinstance(value, int) or value < 0 or value >= (1 << bits):
        raise LispEncodeError(f"{name}={value!r} does not fit in {bits} bits")
    return value


def check_flag(value, name):
    """1 or 0 for a one-bit flag; LispEncodeError for anything but a bool (or the ints 0/1).

    Without this, a flag set to e.g. 2 would be shifted into the neighbouring bit (for the
    first flag of a header: into the Type field, turning a Map-Reply into a Map-Register)."""
    if value is True or value is False or (type(value) is int and value in (0, 1)):
        return int(value)
    raise LispEncodeError(f"{name}={value!r} is not a one-bit flag (True/False)")
