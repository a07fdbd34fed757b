"""A minimal safetensors reader/writer in numpy, written from the format's
description (u64 little-endian header length, JSON header, raw little-endian
tensors). It is the "numpy writing the same layout" side of the interop test;
the real `safetensors` package is the other, independent side."""
import json
import struct

import numpy as np

DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
          "I8": "i1", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?"}


def save(path, tensors, metadata=None):
    """tensors: list of (name, ndarray) in the order to lay them out."""
    header, offset, blobs = {}, 0, []
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name, a in tensors:
        a = np.asarray(a)  # keeps 0-d scalars 0-d; tobytes() is C order
        code = next(k for k, v in DTYPES.items() if np.dtype(v) == a.dtype.newbyteorder("<"))
        raw = a.astype(np.dtype(DTYPES[code])).tobytes()
        header[name] = {"dtype": code, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def load(path):
    """Returns (dict name -> ndarray in header order, metadata dict)."""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = buf[8 + n:]
    out = {}
    for name, ent in header.items():
        b, e = ent["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype=DTYPES[ent["dtype"]]).reshape(ent["shape"])
    return out, meta
