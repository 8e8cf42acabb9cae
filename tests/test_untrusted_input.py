"""Malformed files that once crashed the worker, failed a whole batch, or came back with the wrong
size: each is answered per item, with a message naming the format and the problem.

The broad campaign is the mutation fuzzer (tests/test_mutation_fuzz.py); these are the named
regressions from issue #12. Anything that could kill the interpreter runs in a child process.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from gpu_worker.codecs import decode, probe
from gpu_worker.config import Settings
from gpu_worker.jobs import JobRunner
from photos import sample
from worker_process import REPO_ROOT

RUNNER = JobRunner(Settings(gpu_worker_device="cpu", cache_max_bytes=0), torch.device("cpu"))
OPS = [{"type": "resize", "params": {"width": 32}}]


def _png(im: Image.Image) -> bytes:
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def _chunks(png: bytes) -> list[bytes]:
    """A PNG's chunks, each whole (length, type, data, CRC)."""
    pos, out = 8, []
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        out.append(png[pos : pos + 12 + length])
        pos += 12 + length
    return out


def _item(data: bytes) -> dict:
    return {"image": {"base64": base64.b64encode(data).decode()}}


def _idat_flipped(png: bytes) -> bytes:
    """The PNG with one bit flipped in the middle of its first IDAT's data (CRC left stale)."""
    pos = png.index(b"IDAT") + 4
    length = struct.unpack(">I", png[pos - 8 : pos - 4])[0]
    data = bytearray(png)
    data[pos + length // 2] ^= 0x10
    return bytes(data)


def test_png_with_a_flipped_idat_byte_fails_its_item_in_a_living_process():
    """torchvision's decode_png died by SIGSEGV on this (any libpng error); the worker must answer
    in a batch, beside a good image, and go on serving. In a child: a crash fails this test."""
    good = _png(sample("RGB", (64, 48)))
    bad = {kind: _idat_flipped(_png(sample(kind, (64, 48)))) for kind in ("RGB", "RGBA", "L")}
    bad["palette"] = _idat_flipped(_png(sample("RGB", (64, 48)).convert("P")))
    job = {"images": [_item(good)] + [_item(data) for data in bad.values()] + [_item(good)], "operations": OPS}
    script = (
        "import json, sys, torch\n"
        "from gpu_worker.config import Settings\nfrom gpu_worker.jobs import JobRunner\n"
        "runner = JobRunner(Settings(gpu_worker_device='cpu', cache_max_bytes=0), torch.device('cpu'))\n"
        "out = runner.run(json.load(sys.stdin))\n"
        "print(json.dumps([[r['success'], r.get('error')] for r in out['results']]))\n"
    )
    child = subprocess.run([sys.executable, "-c", script], input=json.dumps(job), capture_output=True, text=True,
                           timeout=120, cwd=REPO_ROOT)
    assert child.returncode == 0, f"the worker died (status {child.returncode}): {child.stderr[-2000:]}"
    results = json.loads(child.stdout.strip().splitlines()[-1])
    assert results[0] == [True, None] and results[-1] == [True, None]
    for (ok, error), kind in zip(results[1:-1], bad):
        assert not ok, kind
        assert error.startswith("images[") and "PNG" in error, error


def test_a_palette_png_with_plte_before_ihdr_is_read_as_pillow_reads_it():
    """The probe once read the colour type at a fixed offset (IHDR first) and failed the whole
    batch with KeyError; Pillow opens such a file."""
    png = _png(sample("RGB", (40, 30)).convert("P", palette=Image.Palette.ADAPTIVE))
    chunks = _chunks(png)
    first = [c for c in chunks if c[4:8] == b"PLTE"] + [c for c in chunks if c[4:8] == b"IHDR"]
    swapped = png[:8] + b"".join(first + [c for c in chunks if c[4:8] not in (b"PLTE", b"IHDR")])
    with Image.open(io.BytesIO(swapped)) as im:
        expected = np.asarray(im.convert("RGB"))
    info = probe(swapped)
    assert (info.format, info.mode, info.channels) == ("PNG", "P", 3)
    got = decode(swapped, "cpu").permute(1, 2, 0).numpy()
    assert np.array_equal(got, expected)


def _gif_first_descriptor(gif: bytes) -> int:
    """Offset of the first image descriptor (0x2C): after the header, the global colour table and
    any extension blocks."""
    flags = gif[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while gif[pos] == 0x21:  # extension: introducer, label, then sub-blocks up to a zero length
        pos += 2
        while gif[pos]:
            pos += gif[pos] + 1
        pos += 1
    assert gif[pos] == 0x2C
    return pos


def test_a_gif_frame_below_the_screen_gives_the_size_its_metadata_states():
    """A GIF whose image descriptor's top is 32767: Pillow grows the canvas to hold the frame. The
    result's metadata and its pixels agree (they once said 64x8780 for a 64x42 image)."""
    out = io.BytesIO()
    sample("RGB", (64, 42)).convert("P").save(out, "GIF")
    gif = bytearray(out.getvalue())
    descriptor = _gif_first_descriptor(bytes(gif))
    gif[descriptor + 3 : descriptor + 5] = struct.pack("<H", 32767)
    response = RUNNER.run({"image": {"base64": base64.b64encode(bytes(gif)).decode()}, "output": {"format": "PNG"}})
    assert response["success"], response
    source = response["metadata"]["source"]
    with Image.open(io.BytesIO(bytes(gif))) as im:
        assert (source["width"], source["height"]) == im.size
    png = base64.b64decode(response["processed_image"].split(",", 1)[1])
    with Image.open(io.BytesIO(png)) as result:
        assert result.size == (response["metadata"]["width"], response["metadata"]["height"])


def test_decoded_size_is_checked_against_the_header(monkeypatch):
    """A decoder that returns another size than the header's fails that item with a message; the
    others in the batch are served."""
    import gpu_worker.codecs.decode  # noqa: F401 - the module, not the function of that name

    decode_module = sys.modules["gpu_worker.codecs.decode"]

    real = decode_module._decode_cpu

    def shrinking(data, info):  # fault injection: a decoder disagreeing with the header
        img, orientation = real(data, info)
        return (img[:, :-1] if info.format == "GIF" else img), orientation

    monkeypatch.setattr(decode_module, "_decode_cpu", shrinking)
    gif, png = io.BytesIO(), io.BytesIO()
    sample("RGB", (20, 10)).convert("P").save(gif, "GIF")
    sample("RGB", (20, 10)).save(png, "PNG")
    response = RUNNER.run({"images": [_item(gif.getvalue()), _item(png.getvalue())], "operations": OPS})
    first, second = response["results"]
    assert not first["success"] and "GIF decoded to 20x9 pixels, but its header says 20x10" in first["error"]
    assert second["success"]


@pytest.mark.parametrize("stage", ["probe", "fetch_source"])
def test_any_exception_in_one_items_stage_fails_only_that_item(monkeypatch, stage):
    """Not only the expected JobErrors: a bug's exception (here injected into one item's probe or
    fetch) fails its own item with a message naming the stage, and the batch goes on."""
    import gpu_worker.stages.intake as intake

    good = _png(sample("RGB", (20, 10)))
    poisoned = _png(sample("L", (20, 10)))
    real = getattr(intake, stage)

    def flaky(arg, *args, **kwargs):  # fault injection: a KeyError where none is expected
        data = arg if isinstance(arg, bytes) else base64.b64decode(arg.get("base64", ""))
        if data == poisoned:
            raise KeyError(5)
        return real(arg, *args, **kwargs)

    monkeypatch.setattr(intake, stage, flaky)
    response = RUNNER.run({"images": [_item(good), _item(poisoned), _item(good)], "operations": OPS})
    assert [r["success"] for r in response["results"]] == [True, False, True]
    error = response["results"][1]["error"]
    assert error.startswith("images[1]: internal error while the") and "KeyError" in error, error
