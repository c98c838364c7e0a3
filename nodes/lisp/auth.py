"""Authentication of Map-Register, Map-Notify and Map-Notify-Ack (RFC 9301 5.6, 5.7).

The sender fills the Authentication Data field with zeros, computes the HMAC over the whole
message (from the Type field to the end, xTR-ID and Site-ID included), and writes it into the
field. Algorithm ID 1 is HMAC-SHA-1-96 and 2 is HMAC-SHA-256-128.

Authentication data length: deployed implementations (Open Overlay Router, lispers.net and
others) send the whole digest (20 octets for SHA-1, 32 for SHA-256); RFC 9301's algorithm
names describe digests truncated to 96 and 128 bits (12 and 16 octets). The verifier accepts
both lengths and compares the received octets against the same number of leading octets of
the digest. The encoder writes the whole digest by default (what interoperates with the
deployed base) and the truncated one with `truncate=True`.
"""
import copy
import hashlib
import hmac
import struct

from .errors import LispEncodeError
from .messages import (ALG_HMAC_SHA1_96, ALG_HMAC_SHA256_128, ALG_NONE, AUTH_DATA_OFFSET,
                       MAP_NOTIFY, MAP_NOTIFY_ACK, MAP_REGISTER, MapNotify, encode)

_DIGESTS = {ALG_HMAC_SHA1_96: (hashlib.sha1, (20, 12)),
            ALG_HMAC_SHA256_128: (hashlib.sha256, (32, 16))}

ALG_NAMES = {ALG_NONE: "none", ALG_HMAC_SHA1_96: "hmac-sha-1-96",
             ALG_HMAC_SHA256_128: "hmac-sha-256-128"}
ALG_BY_NAME = {v: k for k, v in ALG_NAMES.items()}


def auth_length(alg_id, truncate=False):
    """Octets of authentication data that `sign` writes for `alg_id`."""
    if alg_id == ALG_NONE:
        return 0
    try:
        full, short = _DIGESTS[alg_id][1]
    except KeyError:
        raise LispEncodeError(f"unknown authentication algorithm {alg_id}") from None
    return short if truncate else full


def _key(key):
    return key.encode() if isinstance(key, str) else bytes(key)


_PROTOTYPES = {}


def _hmac(key, alg_id, data):
    """HMAC digest of `data`. The keyed inner/outer state is computed once per (key,
    algorithm) and copied for each message: the Map-Server checks a registration and signs
    its Map-Notify with the same key thousands of times a second."""
    proto = _PROTOTYPES.get((key, alg_id))
    if proto is None:
        if len(_PROTOTYPES) > 1024:
            _PROTOTYPES.clear()
        proto = _PROTOTYPES[(key, alg_id)] = hmac.new(_key(key), digestmod=_DIGESTS[alg_id][0])
    h = proto.copy()
    h.update(data)
    return h.digest()


def sign(msg, key, truncate=False):
    """A copy of `msg` (Map-Register/Notify/Notify-Ack) with its authentication data filled.

    `msg.alg_id` chooses the algorithm; `msg.key_id` is sent as it is."""
    n = auth_length(msg.alg_id, truncate)
    signed = copy.copy(msg)
    signed.auth_data = bytes(n)
    if n:
        digest = _hmac(key, msg.alg_id, encode(signed))
        signed.auth_data = digest[:n]
    return signed


def notify_for_register(raw, register, key):
    """The Map-Notify that acknowledges a Map-Register (want-map-notify), as (message,
    bytes), built from the register's own bytes: same nonce, Key ID, Algorithm ID, records
    and xTR-ID, a Map-Notify header, and a fresh HMAC. This is what the Map-Server sends for
    every registration, so it avoids encoding the records again."""
    length = len(register.auth_data)
    word = (MAP_NOTIFY << 28) | ((register.xtr_id is not None) << 27) | len(register.records)
    body = bytearray(raw)
    struct.pack_into("!I", body, 0, word)
    body[AUTH_DATA_OFFSET:AUTH_DATA_OFFSET + length] = bytes(length)
    digest = _hmac(key, register.alg_id, body)[:length]
    body[AUTH_DATA_OFFSET:AUTH_DATA_OFFSET + length] = digest
    notify = MapNotify(register.nonce, register.records, register.key_id, register.alg_id,
                       digest, xtr_id=register.xtr_id, site_id=register.site_id)
    return notify, bytes(body)


def verify(raw, key):
    """True when the wire bytes `raw` of a Map-Register/Notify/Notify-Ack carry a valid HMAC
    for `key`. False for a wrong key, an unknown algorithm, a length the algorithm does not
    allow, or no authentication at all (Algorithm ID 0 is never accepted)."""
    if len(raw) < AUTH_DATA_OFFSET or raw[0] >> 4 not in (MAP_REGISTER, MAP_NOTIFY,
                                                          MAP_NOTIFY_ACK):
        return False
    alg_id = raw[13]
    length = struct.unpack_from("!H", raw, 14)[0]
    if alg_id not in _DIGESTS or length not in _DIGESTS[alg_id][1]:
        return False
    end = AUTH_DATA_OFFSET + length
    if len(raw) < end:
        return False
    zeroed = raw[:AUTH_DATA_OFFSET] + bytes(length) + raw[end:]
    digest = _hmac(key, alg_id, zeroed)
    return hmac.compare_digest(digest[:length], raw[AUTH_DATA_OFFSET:end])
