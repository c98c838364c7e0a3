"""The one exception type the protocol core raises for bad bytes."""


class LispDecodeError(ValueError):
    """Bytes that are not a valid LISP message.

    Every decoder in the core raises this, and only this, for malformed input. The message
    names the field and the byte offset where decoding stopped, e.g.
    ``Map-Register.record[0].locator[1].afi at offset 52: unknown AFI 99``.
    """

    def __init__(self, field, offset, reason):
        self.field = field
        self.offset = offset
        self.reason = reason
        super().__init__(f"{field} at offset {offset}: {reason}")


class LispEncodeError(ValueError):
    """A message object that cannot be put on the wire (a value out of its field's range)."""
