#!/usr/bin/env python3
"""convert_pth.py - turn a Cellpose model file (the torch.save'd state_dict
that Cellpose writes: cyto3, nuclei, cpsam, a user's custom model; CPnet or
the Cellpose-SAM ViT) into cellpose.c's
model.bin (safetensors layout), keeping every name, shape, dtype, value and
the state_dict order. And back: --to-pth writes a torch.save'd state_dict
from a model.bin, which Cellpose's CPnet.load_model / Transformer.load_model
reads.

    /usr/bin/python3 nets/convert_pth.py cellpose_model model.bin
    /usr/bin/python3 nets/convert_pth.py --to-pth model.bin cellpose_model

Only the Python standard library, numpy and torch (Debian's python3-torch)
are needed. Errors are one line and exit 1."""
import json
import os
import struct
import sys

import numpy as np

DT = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
      "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
CODE = {np.dtype(v).str: k for k, v in DT.items()}


def write_safetensors(path, items, metadata=None):
    """items: list of (name, ndarray) in order. Atomic: temp file + rename."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, a in items:
        a = np.asarray(a)
        a = a.astype(a.dtype.newbyteorder("<"))
        raw = a.tobytes()
        header[name] = {"dtype": CODE[a.dtype.str], "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = buf[8 + n:]
    items = []
    for name, ent in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, e = ent["data_offsets"]
        items.append((name, np.frombuffer(data[b:e], dtype=DT[ent["dtype"]]).reshape(ent["shape"]).copy()))
    return items, meta


def pth_to_bin(src, dst):
    import torch
    sd = torch.load(src, map_location="cpu")
    if not isinstance(sd, dict):
        raise ValueError(f"{src}: not a state_dict (got {type(sd).__name__})")
    items = [(k[7:] if k.startswith("module.") else k,
              (v.float() if v.dtype == torch.bfloat16 else v).detach().cpu().numpy()) for k, v in sd.items()]
    names = {k for k, _ in items}
    if "W2" in names:  # Cellpose-SAM (v4 Transformer): CELLPOSE.md 2.6
        net = "vit"
        for need in ("encoder.pos_embed", "encoder.patch_embed.proj.weight", "encoder.neck.0.weight", "out.weight"):
            if need not in names:
                raise ValueError(f"{src}: has W2 but no '{need}': not a Cellpose-SAM state_dict")
        # Cellpose-SAM files are float32; a bf16/f16 net saved by hand is widened (exactly; bf16 above)
        items = [(k, v.astype(np.float32) if v.dtype == np.float16 else v) for k, v in items]
    elif any(k.startswith("downsample.") for k in names):
        net = "cpnet"
    else:
        raise ValueError(f"{src}: neither a CPnet (downsample.*) nor a Cellpose-SAM (W2, encoder.*) state_dict")
    write_safetensors(dst, items, {"source": os.path.basename(src), "format": "cellpose-state_dict", "net": net})
    return len(items)


def bin_to_pth(src, dst):
    import collections
    import torch
    items, _ = read_safetensors(src)
    sd = collections.OrderedDict((k, torch.from_numpy(v)) for k, v in items)
    torch.save(sd, dst)
    return len(items)


def main(argv):
    try:
        if len(argv) == 4 and argv[1] == "--to-pth":
            n = bin_to_pth(argv[2], argv[3])
        elif len(argv) == 3:
            n = pth_to_bin(argv[1], argv[2])
        else:
            print(__doc__.split("\n\n")[1], file=sys.stderr)
            return 2
    except Exception as e:  # one line, whatever went wrong
        print(f"convert_pth: {e}".replace("\n", " "), file=sys.stderr)
        return 1
    print(f"converted {n} tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
