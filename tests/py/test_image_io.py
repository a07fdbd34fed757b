"""Image I/O interop between tifffile/numpy and the C readers and writers.

Python -> C: tifffile writes TIFFs (dtypes, 1/3/4 samples, contiguous and
planar, multi-page, tiled, zlib/lzma compression, predictors, big-endian,
BigTIFF); `inspect --json FILE [--page N]` (bin/, or $CP_BIN) must report the
same size, dtype, page count and a SHA-256 equal to that of the numpy pixels
as image_read returns them: HWC, the same dtype, little-endian.

C -> Python: tests/test_image.c (test_export_for_python) leaves files in
$CP_IMAGE_OUT; they hold a deterministic formula, base = y*131 + x*7 + c*3:
  unsigned N-bit  (base * 40503) mod 2^N
  signed N-bit    ((base * 40503) mod 2^N) - 2^(N-1)
  float32/64      base * 0.25 - 100
  labels_u16.tif  (base * 40503) mod 65536 at c = 0, stored as uint16
  labels_u32.tif  base * 40503 + 70000 at c = 0, stored as uint32
  f32_c{1,3}.tif  the float formula, c = plane, stored planar float32
  png_c{1,3,4}.png (base * 40503) mod 256, read with the small PNG decoder below
tests/run_all.sh runs the C tests first and sets CP_IMAGE_OUT.
"""
import hashlib
import json
import os
import struct
import zlib

import numpy as np
import pytest
import tifffile
from conftest import run_prog

H, W = 37, 53  # GEN_H, GEN_W in tests/test_image.c
DTYPES = ["uint8", "uint16", "int16", "uint32", "int32", "float32"]
ALL_DTYPES = ["uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64"]


# ---- helpers ---------------------------------------------------------------

def random_pixels(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return (rng.standard_normal(shape) * 1000).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dt)


def pixel_sha(hwc):
    """SHA-256 of the buffer image_read returns: HWC, little-endian."""
    a = np.asarray(hwc)
    if a.ndim == 2:
        a = a[:, :, None]
    a = np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<"), copy=False))
    return hashlib.sha256(a.tobytes()).hexdigest()


def inspect(bindir, path, page=None):
    extra = [] if page is None else ["--page", str(page)]
    r = run_prog(bindir, "inspect", "--json", str(path), *extra)
    assert r.returncode == 0, f"inspect {path} failed (exit {r.returncode}): {r.stderr.strip()}"
    return json.loads(r.stdout)


def inspect_fails(bindir, path, *extra):
    r = run_prog(bindir, "inspect", "--json", str(path), *extra)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1, f"expected exit 1 for {path}, got {r.returncode}: {r.stderr}"
    assert r.stdout == "", r.stdout
    assert len(lines) == 1 and str(path) in lines[0], r.stderr
    return lines[0]


def check_page(bindir, path, hwc, page=None, pages=1):
    hwc = np.asarray(hwc)
    j = inspect(bindir, path, page)
    c = 1 if hwc.ndim == 2 else hwc.shape[2]
    assert j["kind"] == "image"
    assert (j["height"], j["width"], j["channels"]) == (hwc.shape[0], hwc.shape[1], c), j
    assert j["dtype"] == hwc.dtype.name, j
    assert (j["pages"], j["page"]) == (pages, page or 0), j
    assert j["sha256"] == pixel_sha(hwc), f"{path}: pixels differ"


@pytest.fixture(scope="session")
def image_out():
    d = os.environ.get("CP_IMAGE_OUT")
    if not d:
        pytest.fail("CP_IMAGE_OUT is not set: run the C test first with it set "
                    "(tests/run_all.sh does: CP_IMAGE_OUT=build/test-out/image build/tests/test_image)")
    if not os.path.isdir(d):
        pytest.fail(f"CP_IMAGE_OUT={d} does not exist: run build/tests/test_image with it set first")
    return d


# ---- Python -> C -------------------------------------------------------------

LAYOUTS = ["c1", "c3_contig", "c3_planar"]


@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_tifffile_to_c(bindir, tmp_path, dtype, layout, compression):
    seed = DTYPES.index(dtype) * 10 + LAYOUTS.index(layout)
    p = tmp_path / "img.tif"
    if layout == "c1":
        hwc = random_pixels((H, W), dtype, seed)
        tifffile.imwrite(p, hwc, photometric="minisblack", compression=compression)
    elif layout == "c3_contig":
        hwc = random_pixels((H, W, 3), dtype, seed)
        tifffile.imwrite(p, hwc, photometric="rgb", planarconfig="contig", compression=compression)
    else:
        hwc = random_pixels((H, W, 3), dtype, seed)
        tifffile.imwrite(p, np.moveaxis(hwc, 2, 0), photometric="rgb", planarconfig="separate",
                         compression=compression)
        assert tifffile.TiffFile(p).pages[0].planarconfig == tifffile.PLANARCONFIG.SEPARATE
    check_page(bindir, p, hwc)


@pytest.mark.parametrize("dtype", ["int8", "float64"])
def test_tifffile_other_dtypes(bindir, tmp_path, dtype):
    hwc = random_pixels((H, W, 3), dtype, 77)
    tifffile.imwrite(tmp_path / "a.tif", hwc, photometric="rgb")
    check_page(bindir, tmp_path / "a.tif", hwc)


@pytest.mark.parametrize("samples", [2, 4])
def test_tifffile_extra_samples(bindir, tmp_path, samples):
    hwc = random_pixels((H, W, samples), "uint16", samples)
    tifffile.imwrite(tmp_path / "a.tif", hwc, photometric="minisblack", planarconfig="contig")
    check_page(bindir, tmp_path / "a.tif", hwc)
    rgba = random_pixels((H, W, 4), "uint8", 9)
    tifffile.imwrite(tmp_path / "rgba.tif", np.moveaxis(rgba, 2, 0), photometric="rgb", planarconfig="separate",
                     extrasamples=["unassalpha"])
    check_page(bindir, tmp_path / "rgba.tif", rgba)


def test_multipage_gray(bindir, tmp_path):
    stack = random_pixels((5, H, W), "uint16", 1)
    p = tmp_path / "stack.tif"
    tifffile.imwrite(p, stack, photometric="minisblack", compression="zlib")
    assert len(tifffile.TiffFile(p).pages) == 5
    for k in range(5):
        check_page(bindir, p, stack[k], page=k, pages=5)
    msg = inspect_fails(bindir, p, "--page", "5")
    assert "page 5 requested, file has 5 pages" in msg


def test_multipage_rgb_contig_and_planar(bindir, tmp_path):
    stack = random_pixels((3, H, W, 3), "uint8", 2)
    tifffile.imwrite(tmp_path / "rgb.tif", stack, photometric="rgb")
    for k in range(3):
        check_page(bindir, tmp_path / "rgb.tif", stack[k], page=k, pages=3)
    stack = random_pixels((2, H, W, 3), "float32", 3)
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(stack, 3, 1), photometric="rgb", planarconfig="separate")
    for k in range(2):
        check_page(bindir, tmp_path / "planar.tif", stack[k], page=k, pages=2)


def test_pages_written_one_by_one(bindir, tmp_path):
    """Pages of different size and dtype in one file."""
    p = tmp_path / "mixed.tif"
    a = random_pixels((H, W), "int32", 4)
    b = random_pixels((20, 11, 3), "uint8", 5)
    with tifffile.TiffWriter(p) as tw:
        tw.write(a, photometric="minisblack")
        tw.write(b, photometric="rgb")
    check_page(bindir, p, a, page=0, pages=2)
    check_page(bindir, p, b, page=1, pages=2)


@pytest.mark.parametrize("planar", [False, True])
def test_tiled(bindir, tmp_path, planar):
    hwc = random_pixels((70, 45, 3), "uint16", 6)
    data = np.moveaxis(hwc, 2, 0) if planar else hwc
    p = tmp_path / "tiled.tif"
    tifffile.imwrite(p, data, photometric="rgb", planarconfig="separate" if planar else "contig",
                     tile=(32, 16), compression="zlib")
    assert tifffile.TiffFile(p).pages[0].is_tiled
    check_page(bindir, p, hwc)


def test_tiled_gray_float(bindir, tmp_path):
    hw = random_pixels((50, 33), "float32", 7)
    tifffile.imwrite(tmp_path / "t.tif", hw, tile=(16, 16))
    check_page(bindir, tmp_path / "t.tif", hw)


@pytest.mark.parametrize("dtype", ["int16", "uint32", "float32", "float64"])
def test_big_endian(bindir, tmp_path, dtype):
    hwc = random_pixels((H, W, 3), dtype, 8)
    p = tmp_path / "be.tif"
    tifffile.imwrite(p, hwc, photometric="rgb", byteorder=">")
    assert open(p, "rb").read(2) == b"MM"
    check_page(bindir, p, hwc)


def test_bigtiff_small_strips_predictor_lzma(bindir, tmp_path):
    hwc = random_pixels((H, W, 3), "uint16", 9)
    tifffile.imwrite(tmp_path / "big.tif", hwc, photometric="rgb", bigtiff=True)
    assert open(tmp_path / "big.tif", "rb").read(4) == b"II+\x00"
    check_page(bindir, tmp_path / "big.tif", hwc)
    tifffile.imwrite(tmp_path / "strips.tif", hwc, photometric="rgb", rowsperstrip=5)
    assert len(tifffile.TiffFile(tmp_path / "strips.tif").pages[0].dataoffsets) == 8
    check_page(bindir, tmp_path / "strips.tif", hwc)
    tifffile.imwrite(tmp_path / "pred.tif", hwc, photometric="rgb", compression="zlib", predictor=True)
    check_page(bindir, tmp_path / "pred.tif", hwc)
    tifffile.imwrite(tmp_path / "lzma.tif", hwc[:, :, 0], compression="lzma")
    check_page(bindir, tmp_path / "lzma.tif", hwc[:, :, 0])


def test_bad_files(bindir, tmp_path):
    assert "No such file" in inspect_fails(bindir, tmp_path / "missing.tif")
    a = random_pixels((64, 64), "uint16", 10)
    p = tmp_path / "whole.tif"
    tifffile.imwrite(p, a)  # tifffile puts the directory before the pixels
    data = open(p, "rb").read()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    assert "truncated" in inspect_fails(bindir, cut)
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\x00" + bytes(range(256)) * 3)
    inspect_fails(bindir, junk)
    f = random_pixels((10, 12), "float32", 11)
    f[4, 9] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", f)
    assert "pixel (y=4, x=9, c=0) is NaN" in inspect_fails(bindir, tmp_path / "nan.tif")
    pal = tmp_path / "palette.tif"
    tifffile.imwrite(pal, np.zeros((8, 8), np.uint8), photometric="palette",
                     colormap=np.zeros((3, 256), np.uint16))
    assert "palette" in inspect_fails(bindir, pal)


# ---- C -> Python ---------------------------------------------------------------

def formula(dtype, c):
    """Expected HWC array (c channels) of the documented formula."""
    y, x, k = np.meshgrid(np.arange(H), np.arange(W), np.arange(c), indexing="ij")
    base = (y * 131 + x * 7 + k * 3).astype(np.int64)
    m = base * 40503
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return (base * 0.25 - 100.0).astype(dt)
    bits = dt.itemsize * 8
    v = m % (1 << bits)
    if dt.kind == "i":
        v = v - (1 << (bits - 1))
    return v.astype(dt)


def read_tiff_hwc(path):
    """tifffile read, returned as HWC (planar pages are (c, h, w) in tifffile)."""
    with tifffile.TiffFile(path) as tf:
        page = tf.pages[0]
        a = page.asarray()
        planar = page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and page.samplesperpixel > 1
        if planar:
            a = np.moveaxis(a, 0, 2)
        return a, page


def out_file(image_out, name):
    p = os.path.join(image_out, name)
    assert os.path.exists(p), f"{p} missing: run build/tests/test_image with CP_IMAGE_OUT={image_out} first"
    return p


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("variant", ["c1", "c1_deflate", "c3_contig", "c3_planar"])
def test_c_written_tiff(image_out, bindir, dtype, variant):
    p = out_file(image_out, f"gen_{dtype}_{variant}.tif")
    c = 1 if variant.startswith("c1") else 3
    a, page = read_tiff_hwc(p)
    want = formula(dtype, c)
    if c == 1:
        want = want[:, :, 0]
    assert a.dtype == np.dtype(dtype)
    assert a.shape == want.shape
    np.testing.assert_array_equal(a, want)
    want_pc = tifffile.PLANARCONFIG.SEPARATE if variant == "c3_planar" else tifffile.PLANARCONFIG.CONTIG
    assert c == 1 or page.planarconfig == want_pc
    if variant == "c1_deflate":
        assert page.compression in (tifffile.COMPRESSION.ADOBE_DEFLATE, tifffile.COMPRESSION.DEFLATE)
    check_page(bindir, p, want)  # and the C reader agrees with numpy's bytes


def test_c_written_labels(image_out):
    y, x = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    m = (y * 131 + x * 7).astype(np.int64) * 40503
    a = tifffile.imread(out_file(image_out, "labels_u16.tif"))
    assert a.dtype == np.uint16 and a.shape == (H, W)
    np.testing.assert_array_equal(a, m % 65536)
    a = tifffile.imread(out_file(image_out, "labels_u32.tif"))
    assert a.dtype == np.uint32 and a.shape == (H, W)
    np.testing.assert_array_equal(a, m + 70000)


def test_c_written_f32(image_out):
    want = np.moveaxis(formula("float32", 3), 2, 0)  # (c, h, w)
    a = tifffile.imread(out_file(image_out, "f32_c1.tif"))
    assert a.dtype == np.float32 and a.shape == (H, W)
    np.testing.assert_array_equal(a, want[0])
    with tifffile.TiffFile(out_file(image_out, "f32_c3.tif")) as tf:
        assert tf.pages[0].planarconfig == tifffile.PLANARCONFIG.SEPARATE
        a = tf.asarray()
    assert a.dtype == np.float32 and a.shape == (3, H, W)
    np.testing.assert_array_equal(a, want)


def read_png8(path):
    """Minimal PNG decoder: 8-bit gray/RGB/RGBA, not interlaced, CRCs checked."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind}"
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = hdr
    assert depth == 8 and interlace == 0 and ctype in (0, 2, 6), hdr
    c = {0: 1, 2: 3, 6: 4}[ctype]
    raw = zlib.decompress(idat)
    stride = w * c
    out = np.zeros((h, stride), np.int64)
    prev = np.zeros(stride, np.int64)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int64)
        cur = np.zeros(stride, np.int64)
        for i in range(stride):
            a = cur[i - c] if i >= c else 0
            b = prev[i]
            cc = prev[i - c] if i >= c else 0
            if f == 0:
                pred = 0
            elif f == 1:
                pred = a
            elif f == 2:
                pred = b
            elif f == 3:
                pred = (a + b) // 2
            elif f == 4:
                pa, pb, pc = abs(b - cc), abs(a - cc), abs(a + b - 2 * cc)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else cc)
            else:
                raise AssertionError(f"bad PNG filter {f}")
            cur[i] = (line[i] + pred) & 255
        out[y], prev = cur, cur
    return out.reshape(h, w, c).astype(np.uint8)


@pytest.mark.parametrize("c", [1, 3, 4])
def test_c_written_png(image_out, bindir, c):
    p = out_file(image_out, f"png_c{c}.png")
    a = read_png8(p)
    np.testing.assert_array_equal(a, formula("uint8", c))
    check_page(bindir, p, a if c > 1 else a[:, :, 0])
