"""Codecs: probe (header only), decode on the device against Pillow, encode round trips."""

from __future__ import annotations

import importlib
import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, ImageOps

import corpus
from gpu_worker.codecs import (
    FORMATS,
    SourceInfo,
    apply_orientation,
    check_pixels,
    decode,
    decode_batch,
    encode,
    flatten_alpha,
    probe,
)
from gpu_worker.codecs.decode import jpeg_complete
from gpu_worker.errors import DecodeError, EncodeError, LimitExceeded
from photos import max_abs_diff, pil_array, sample, to_array, to_tensor

#: Decoded pixels against Pillow, max abs difference (levels). The CPU paths use the same
#: libraries as Pillow (libjpeg-turbo, libpng/zlib, libwebp, giflib vs Pillow's GIF decoder),
#: and are exact. nvjpeg has its own IDCT and chroma upsampling: judged by PSNR instead.
CPU_ATOL = 0
NVJPEG_MIN_PSNR = 35.0
#: JPEG/WebP round trips of a photo at the given quality.
ROUND_TRIP_MIN_PSNR = 30.0


def pil_open(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def pil_rgb(data):
    return pil_array(pil_open(data).convert("RGB"))


def pil_rgba(data):
    return pil_array(pil_open(data).convert("RGBA"))


def pil_as_is(data):
    return pil_array(pil_open(data))


def pil_transposed(data):
    return pil_array(ImageOps.exif_transpose(pil_open(data)))


def high_byte(a16: np.ndarray) -> np.ndarray:
    a = (a16 >> 8).astype(np.uint8)
    return a[:, :, None] if a.ndim == 2 else a


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _gray_trns_expected(fn):
    data, key = fn()
    im = pil_open(data)
    grey = high_byte(np.asarray(im)) if im.mode.startswith("I;16") else pil_array(im)
    return np.concatenate([grey, np.where(np.asarray(im) == key, 0, 255).astype(np.uint8)[:, :, None]], axis=2)


# name -> (file maker, format, Pillow mode, channels, decoder, expected pixels from the file)
CASES = {
    "jpeg": (corpus.jpeg, "JPEG", "RGB", 3, "torchvision.jpeg", pil_as_is),
    "jpeg_420": (lambda: corpus.jpeg(subsampling=2), "JPEG", "RGB", 3, "torchvision.jpeg", pil_as_is),
    "jpeg_progressive": (corpus.jpeg_progressive, "JPEG", "RGB", 3, "torchvision.jpeg", pil_as_is),
    "jpeg_gray": (corpus.jpeg_gray, "JPEG", "L", 1, "torchvision.jpeg", pil_as_is),
    "jpeg_cmyk": (corpus.jpeg_cmyk, "JPEG", "CMYK", 3, "pillow", pil_rgb),
    "jpeg_mpo": (corpus.mpo, "JPEG", "RGB", 3, "torchvision.jpeg", pil_as_is),  # first picture
    "png_rgb": (lambda: corpus.png(corpus.rgb()), "PNG", "RGB", 3, "pillow", pil_as_is),
    "png_gray": (lambda: corpus.png(sample("L", corpus.SIZE)), "PNG", "L", 1, "pillow", pil_as_is),
    "png_rgba": (lambda: corpus.png(corpus.rgba()), "PNG", "RGBA", 4, "pillow", pil_as_is),
    "png_la": (corpus.png_la, "PNG", "LA", 2, "pillow", pil_as_is),
    "png_palette": (corpus.png_palette, "PNG", "P", 3, "pillow", pil_rgb),
    "png_palette_4bit": (lambda: corpus.png_palette(bits=4), "PNG", "P", 3, "pillow", pil_rgb),
    "png_palette_1bit": (lambda: corpus.png_palette(bits=1), "PNG", "P", 3, "pillow", pil_rgb),
    "png_palette_trns": (corpus.png_palette_transparent, "PNG", "P", 4, "pillow", pil_rgba),
    "png_gray_2bit": (lambda: corpus.png_gray_bits(2), "PNG", "L", 1, "pillow", pil_as_is),
    "png_gray_4bit": (lambda: corpus.png_gray_bits(4), "PNG", "L", 1, "pillow", pil_as_is),
    "png_1bit": (lambda: corpus.png(sample("L", corpus.SIZE).convert("1")), "PNG", "1", 1, "pillow",
                 lambda d: pil_array(pil_open(d).convert("L"))),
    # 16 bits -> high byte. Pillow itself keeps the high byte of 16-bit colour PNGs (mode RGB/RGBA).
    "png_gray16": (corpus.png_gray16, "PNG", "I;16", 1, "pillow", lambda d: high_byte(corpus.gray16())),
    "png_rgb16": (corpus.png_rgb16, "PNG", "RGB", 3, "pillow", pil_as_is),
    "png_rgba16": (corpus.png_rgba16, "PNG", "RGBA", 4, "pillow", pil_as_is),
    "png_la16": (corpus.png_la16, "PNG", "RGBA", 2, "pillow", lambda d: pil_as_is(d)[:, :, [0, 3]]),
    "png_gray_trns": (lambda: corpus.png_gray_trns()[0], "PNG", "L", 2, "pillow",
                      lambda d: _gray_trns_expected(corpus.png_gray_trns)),
    "png_gray16_trns": (lambda: corpus.png_gray16_trns()[0], "PNG", "I;16", 2, "pillow",
                        lambda d: _gray_trns_expected(corpus.png_gray16_trns)),
    "png_rgb_trns": (corpus.png_rgb_trns, "PNG", "RGB", 4, "pillow", pil_rgba),
    "webp_lossy": (corpus.webp_lossy, "WEBP", "RGB", 3, "torchvision.webp", pil_as_is),
    "webp_lossless_alpha": (corpus.webp_lossless_alpha, "WEBP", "RGBA", 4, "torchvision.webp", pil_as_is),
    "webp_animated": (corpus.webp_animated, "WEBP", "RGB", 3, "pillow", pil_as_is),
    "gif": (corpus.gif, "GIF", "P", 3, "pillow", pil_rgb),
    "gif_transparent": (corpus.gif_transparent, "GIF", "P", 4, "pillow", pil_rgba),
    "gif_animated": (corpus.gif_animated, "GIF", "P", 3, "pillow", pil_rgb),
    "gif_gray": (corpus.gif_gray, "GIF", "L", 1, "pillow", pil_as_is),
    "bmp": (corpus.bmp, "BMP", "RGB", 3, "pillow", pil_as_is),
    "tiff": (corpus.tiff, "TIFF", "RGB", 3, "pillow", pil_as_is),
    "tiff_lzw": (lambda: corpus.tiff(compression="tiff_lzw"), "TIFF", "RGB", 3, "pillow", pil_as_is),
    "tiff_rgba": (corpus.tiff_rgba, "TIFF", "RGBA", 4, "pillow", pil_as_is),
}

#: The cases made again at 1x1 (every decoder, every channel count).
TINY = ("jpeg", "jpeg_progressive", "jpeg_gray", "jpeg_cmyk", "png_rgb", "png_rgba", "png_la", "png_palette_trns",
        "png_gray16", "webp_lossy", "webp_lossless_alpha", "gif", "gif_transparent", "bmp", "tiff")
TINY_MAKERS = {
    "jpeg": lambda: corpus.jpeg((1, 1)),
    "jpeg_progressive": lambda: corpus.jpeg_progressive((1, 1)),
    "jpeg_gray": lambda: corpus.jpeg_gray((1, 1)),
    "jpeg_cmyk": lambda: corpus.jpeg_cmyk((1, 1)),
    "png_rgb": lambda: corpus.png(corpus.rgb((1, 1))),
    "png_rgba": lambda: corpus.png(corpus.rgba((1, 1))),
    "png_la": lambda: corpus.png_la((1, 1)),
    "png_palette_trns": lambda: corpus.png_palette_transparent((1, 1)),
    "png_gray16": lambda: corpus.png_gray16((1, 1)),
    "webp_lossy": lambda: corpus.webp_lossy((1, 1)),
    "webp_lossless_alpha": lambda: corpus.webp_lossless_alpha((1, 1)),
    "gif": lambda: corpus.gif((1, 1)),
    "gif_transparent": lambda: corpus.gif_transparent((1, 1)),
    "bmp": lambda: corpus.bmp((1, 1)),
    "tiff": lambda: corpus.tiff((1, 1)),
}


def _expected_tiny(name, data):
    if name == "png_gray16":
        return high_byte(corpus.gray16((1, 1)))
    return CASES[name][5](data)


# ---------------------------------------------------------------------------------------------
# probe


@pytest.mark.parametrize("name", list(CASES))
def test_probe(name):
    make, fmt, mode, channels, decoder, _ = CASES[name]
    data = make()
    info = probe(data)
    assert isinstance(info, SourceInfo)
    assert (info.format, info.mode, info.channels, info.decoder) == (fmt, mode, channels, decoder)
    assert (info.width, info.height) == corpus.SIZE == (info.stored_width, info.stored_height)
    assert info.orientation == 1
    assert info.size_bytes == len(data)
    frames = {"webp_animated": 2, "gif_animated": 3, "jpeg_mpo": 2}.get(name, 1)
    assert info.frames == frames


@pytest.mark.parametrize("orientation", range(1, 9))
def test_probe_orientation_swaps_size(orientation):
    info = probe(corpus.jpeg_exif(orientation))
    assert info.orientation == orientation
    assert (info.stored_width, info.stored_height) == corpus.SIZE
    expected = corpus.SIZE[::-1] if orientation >= 5 else corpus.SIZE
    assert (info.width, info.height) == expected


def test_probe_is_frozen():
    info = probe(corpus.jpeg())
    with pytest.raises(AttributeError):
        info.width = 1  # type: ignore[misc]


def test_probe_huge_png_is_header_only_and_refused(monkeypatch):
    data = corpus.huge_png()
    assert len(data) < 2_000_000
    loads = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: loads.append(im) or real_load(im))
    info = probe(data)
    assert loads == [], "probe read pixels"
    assert (info.width, info.height, info.format, info.mode) == (40000, 40000, "PNG", "1")
    with pytest.raises(LimitExceeded) as e:
        check_pixels(info, 50_000_000)
    msg = str(e.value)
    assert "40000x40000" in msg and "1,600,000,000 pixels" in msg and "MAX_DECODED_PIXELS=50,000,000" in msg


def test_probe_does_not_use_pillows_bomb_warning():
    """100 MP is over Pillow's MAX_IMAGE_PIXELS (89.5 MP): no DecompressionBombWarning (warnings
    are errors here), and Pillow's global setting is left alone."""
    limit = Image.MAX_IMAGE_PIXELS
    info = probe(corpus.huge_png(10000, 10000))
    assert info.pixels == 100_000_000 > limit
    assert Image.MAX_IMAGE_PIXELS == limit


def test_probe_webp_over_pillows_own_limit_is_a_limit_error():
    with pytest.raises(LimitExceeded, match="WebP"):
        probe(corpus.webp_bomb_header())


def test_check_pixels_allows_within_limit_and_no_limit():
    info = probe(corpus.jpeg())
    check_pixels(info, info.width * info.height)
    check_pixels(info, None)
    with pytest.raises(LimitExceeded, match="MY_LIMIT"):
        check_pixels(info, info.width * info.height - 1, name="MY_LIMIT")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty image data"),
        (corpus.random_bytes(), "not a recognised image (JPEG, PNG, WebP, GIF, BMP, TIFF)"),
        (corpus.text(), "not a recognised image"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "PNG"),
        (corpus.jpeg()[:60], "JPEG"),
    ],
    ids=["empty", "random", "text", "png_header_cut", "jpeg_header_cut"],
)
def test_probe_refuses_non_images(data, message):
    with pytest.raises(DecodeError) as e:
        probe(data)
    assert message in str(e.value)
    with pytest.raises(DecodeError):
        decode(data, "cpu")


# ---------------------------------------------------------------------------------------------
# decode against Pillow


@pytest.mark.parametrize("name", list(CASES))
def test_decode_matches_pillow(name):
    make, *_, expected_of = CASES[name]
    data = make()
    info = probe(data)
    out = decode(data, "cpu", info)
    assert out.dtype == torch.uint8 and out.device.type == "cpu"
    assert tuple(out.shape) == (info.channels, info.height, info.width)
    assert max_abs_diff(to_array(out), expected_of(data)) <= CPU_ATOL
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("name", TINY)
def test_decode_1x1(name):
    data = TINY_MAKERS[name]()
    info = probe(data)
    assert (info.width, info.height) == (1, 1)
    out = decode(data, "cpu")
    assert tuple(out.shape) == (CASES[name][3], 1, 1)
    assert max_abs_diff(to_array(out), _expected_tiny(name, data)) <= CPU_ATOL


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_decode_jpeg_exif_orientation_matches_exif_transpose(orientation, mode):
    data = corpus.jpeg_exif(orientation, mode=mode)
    out = decode(data, "cpu")
    assert max_abs_diff(to_array(out), pil_transposed(data)) <= CPU_ATOL


ORIENTED = {
    "png": corpus.png_exif,
    "png_exif_after_idat": corpus.png_exif_after_idat,
    "tiff": corpus.tiff_oriented,  # Pillow 13 turns TIFFs itself while loading
}


@pytest.mark.parametrize("orientation", [3, 6, 7, 8])
@pytest.mark.parametrize("kind", list(ORIENTED))
def test_decode_orientation_other_formats(kind, orientation):
    data = ORIENTED[kind](orientation)
    info = probe(data)
    assert info.orientation == orientation
    assert (info.stored_width, info.stored_height) == corpus.SIZE
    out = decode(data, "cpu")
    assert tuple(out.shape[1:]) == (info.height, info.width)
    assert max_abs_diff(to_array(out), pil_transposed(data)) <= CPU_ATOL


def test_apply_orientation_on_batches():
    batch = torch.arange(2 * 3 * 4 * 5, dtype=torch.uint8).reshape(2, 3, 4, 5)
    for o in range(1, 9):
        whole = apply_orientation(batch, o)
        assert whole.is_contiguous()
        assert torch.equal(whole, torch.stack([apply_orientation(img, o) for img in batch]))


def test_gray16_high_byte_not_pillow_clip():
    """Pillow's I;16 -> L conversion clips at 255; we keep the high byte (documented choice)."""
    data = corpus.png_gray16()
    out = to_array(decode(data, "cpu"))
    clipped = pil_array(pil_open(data).convert("L"))
    assert (clipped == 255).mean() > 0.5  # what Pillow's convert("L") gives: mostly white
    assert max_abs_diff(out, high_byte(corpus.gray16())) == 0


@pytest.mark.parametrize("name", ["jpeg", "jpeg_gray", "jpeg_progressive", "png_rgba", "png_la", "webp_lossy",
                                  "gif", "jpeg_cmyk", "tiff"])
def test_decode_on_device(name, device):
    make, *_, expected_of = CASES[name]
    data = make()
    out = decode(data, device)
    assert out.device.type == device.type and out.dtype == torch.uint8
    expected = expected_of(data)
    if device.type == "cuda" and probe(data).decoder == "torchvision.jpeg":
        assert to_array(out).shape == expected.shape
        assert psnr(to_array(out), expected) >= NVJPEG_MIN_PSNR
    else:
        assert max_abs_diff(to_array(out), expected) <= CPU_ATOL


@pytest.mark.parametrize("orientation", [2, 5, 6, 8])
def test_decode_orientation_on_device(orientation, device):
    data = corpus.jpeg_exif(orientation)
    out = decode(data, device)
    assert out.device.type == device.type
    expected = pil_transposed(data)
    assert to_array(out).shape == expected.shape
    assert psnr(to_array(out), expected) >= (NVJPEG_MIN_PSNR if device.type == "cuda" else float("inf"))


# ---------------------------------------------------------------------------------------------
# decode errors


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (corpus.truncated_jpeg(), "JPEG data is truncated"),
        (corpus.png(corpus.rgb((257, 193)))[:4000], "PNG could not be decoded"),
        (corpus.webp_lossy((257, 193))[:1000], "WebP"),  # Pillow's WebP plugin refuses it at probe
        (corpus.gif((257, 193))[:2000], "GIF could not be decoded"),
        (corpus.bmp((257, 193))[:5000], "BMP could not be decoded"),
        (corpus.tiff((257, 193))[:5000], "TIFF"),
        (corpus.jpeg_cmyk((257, 193))[:3000], "JPEG"),
    ],
    ids=["jpeg", "png", "webp", "gif", "bmp", "tiff", "jpeg_cmyk"],
)
def test_truncated_files_are_errors(data, message):
    with pytest.raises(DecodeError) as e:
        decode(data, "cpu")
    assert message in str(e.value)
    assert ".cpp:" not in str(e.value)  # library source paths are cleaned from the message
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_jpeg_complete():
    data = corpus.jpeg_exif(6)
    assert jpeg_complete(data)
    assert jpeg_complete(data + b"trailing junk after the end marker")
    assert jpeg_complete(corpus.jpeg_progressive())
    for cut in (len(data) - 1, len(data) // 2, 300):
        assert not jpeg_complete(data[:cut])
        assert not jpeg_complete(data[:cut] + b"\xff\x00junk")
    assert not jpeg_complete(b"")
    assert not jpeg_complete(corpus.png(corpus.rgb()))


def test_decode_batch_isolates_bad_items(device):
    good = [corpus.jpeg(), corpus.jpeg_gray(), corpus.jpeg_exif(6), corpus.png_la(), corpus.gif()]
    bad = [corpus.truncated_jpeg(), corpus.text(), b"", corpus.png(corpus.rgb())[:200]]
    datas = [good[0], bad[0], good[1], bad[1], good[2], bad[2], good[3], bad[3], good[4]]
    results = decode_batch(datas, device)
    assert len(results) == len(datas)
    for data, res in zip(datas, results):
        if data in good:
            assert isinstance(res, torch.Tensor), res
            assert res.device.type == device.type
            alone = decode(data, device)
            assert res.shape == alone.shape
            # nvjpeg may take another code path for a batch than for one file: allow 1 level there.
            assert max_abs_diff(to_array(res), to_array(alone)) <= (0 if device.type == "cpu" else 1)
        else:
            assert isinstance(res, DecodeError), res
    assert "truncated" in str(results[1])
    assert "not a recognised image" in str(results[3])
    assert "empty image data" in str(results[5])


def test_a_corrupt_jpeg_in_a_batch_fails_alone_and_the_device_stays_usable(device):
    # It passes the end-marker check, so on CUDA it goes into the batched nvjpeg call with the others.
    good = [corpus.jpeg(), corpus.jpeg_exif(3), corpus.jpeg()]
    results = decode_batch([good[0], corpus.jpeg_bad_huffman_table(), good[1], good[2]], device)
    assert isinstance(results[1], DecodeError) and "JPEG could not be decoded" in str(results[1])
    for data, res in zip(good, [results[0], results[2], results[3]]):
        assert isinstance(res, torch.Tensor) and res.device.type == device.type
        assert max_abs_diff(to_array(res), to_array(decode(data, device))) <= (0 if device.type == "cpu" else 1)
    again = decode_batch(good, device)  # the next batch decodes as usual
    assert all(isinstance(r, torch.Tensor) for r in again)


def test_decode_batch_with_infos_and_empty():
    datas = [corpus.jpeg(), corpus.webp_lossy()]
    infos = [probe(d) for d in datas]
    out = decode_batch(datas, "cpu", infos)
    assert all(torch.equal(a, decode(d, "cpu")) for a, d in zip(out, datas))
    assert decode_batch([], "cpu") == []
    with pytest.raises(ValueError):
        decode_batch(datas, "cpu", infos[:1])


# ---------------------------------------------------------------------------------------------
# encode


def _batch(mode: str, n: int = 2, size=(61, 43)) -> torch.Tensor:
    names = ("astronaut.png", "coffee.png", "chelsea.png")
    return torch.cat([to_tensor(sample(mode, size, names[i % 3])) for i in range(n)])


def _with_mode(mode: str) -> torch.Tensor:
    if mode == "LA":
        rgba = _batch("RGBA")
        grey = _batch("L")
        return torch.cat([grey, rgba[:, 3:]], dim=1)
    return _batch(mode)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_png_round_trip_is_lossless(mode, device):
    batch = _with_mode(mode).to(device)
    before = batch.clone()
    files = encode(batch, "PNG")
    assert torch.equal(batch, before)
    assert len(files) == batch.shape[0]
    for img, data in zip(batch, files):
        assert probe(data).format == "PNG"
        assert torch.equal(decode(data, device), img)
        assert np.array_equal(pil_as_is(data), to_array(img))


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_jpeg_round_trip_psnr(mode, device):
    batch = _batch(mode, size=(129, 97)).to(device)
    files = encode(batch, "JPEG", quality=90)
    for img, data in zip(batch, files):
        info = probe(data)
        assert (info.format, info.channels) == ("JPEG", batch.shape[1])
        out = pil_as_is(data)
        assert out.shape == to_array(img).shape
        assert psnr(out, to_array(img)) >= ROUND_TRIP_MIN_PSNR


def test_jpeg_batched_equals_one_by_one():
    batch = _batch("RGB", n=3)
    together = encode(batch, "JPEG", quality=80)
    alone = [encode(img[None], "JPEG", quality=80)[0] for img in batch]
    assert together == alone


def test_jpeg_quality_changes_size():
    batch = _batch("RGB", n=1, size=(129, 97))
    assert len(encode(batch, "JPEG", quality=30)[0]) < len(encode(batch, "JPEG", quality=95)[0])


def _pillow_on_white(img: np.ndarray) -> np.ndarray:
    if img.shape[2] == 2:
        la = Image.fromarray(img)  # LA
        im = la.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return pil_array(Image.alpha_composite(white, im).convert("L"))
    white = Image.new("RGBA", (img.shape[1], img.shape[0]), (255, 255, 255, 255))
    return pil_array(Image.alpha_composite(white, Image.fromarray(img)).convert("RGB"))


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_flatten_alpha_matches_pillow_composite(mode, device):
    batch = _with_mode(mode).to(device)
    flat = flatten_alpha(batch)
    assert flat.shape[1] == batch.shape[1] - 1 and flat.device.type == device.type
    for img, out in zip(batch, flat):
        assert max_abs_diff(to_array(out), _pillow_on_white(to_array(img))) <= 1


def test_flatten_alpha_formula_and_pillow_on_every_value_pair():
    img = torch.tensor([[[0, 255, 17, 200]], [[0, 0, 255, 128]]], dtype=torch.uint8)  # LA, 1x4
    assert flatten_alpha(img).tolist() == [[[255, 255, 17, round(200 * 128 / 255 + 255 * 127 / 255)]]]
    # All 65536 (colour, alpha) pairs: measured equal to Pillow's composite, not just within 1.
    c = torch.arange(256).repeat_interleave(256)
    a = torch.arange(256).repeat(256)
    rgba = torch.stack([c, c.flip(0), c, a]).to(torch.uint8).reshape(4, 256, 256)
    assert max_abs_diff(to_array(flatten_alpha(rgba)), _pillow_on_white(to_array(rgba))) == 0


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_jpeg_of_alpha_is_flattened_on_white(mode, device):
    batch = _with_mode(mode).to(device)
    files = encode(batch, "JPEG", quality=95)
    for img, data in zip(batch, files):
        info = probe(data)
        assert info.channels == batch.shape[1] - 1
        assert psnr(pil_as_is(data), _pillow_on_white(to_array(img))) >= ROUND_TRIP_MIN_PSNR


def test_webp_lossless_keeps_alpha_exactly(device):
    batch = _batch("RGBA").to(device)
    batch[:, :3, :5, :5] = 77  # colour under some fully transparent pixels must survive too
    batch[:, 3, :5, :5] = 0
    files = encode(batch, "WEBP", lossless=True)
    for img, data in zip(batch, files):
        info = probe(data)
        assert (info.format, info.mode, info.channels) == ("WEBP", "RGBA", 4)
        assert torch.equal(decode(data, device), img)


def test_webp_lossy_and_grey():
    rgb = _batch("RGB", size=(129, 97))
    for img, data in zip(rgb, encode(rgb, "WEBP", quality=90)):
        assert probe(data).mode == "RGB"
        assert psnr(pil_as_is(data), to_array(img)) >= ROUND_TRIP_MIN_PSNR
    grey = _with_mode("LA")
    for img, data in zip(grey, encode(grey, "WEBP", lossless=True)):  # WebP has no grey: RGBA
        out = to_array(decode(data, "cpu"))
        assert out.shape[2] == 4
        assert np.array_equal(out[:, :, [0, 3]], to_array(img)) and np.array_equal(out[:, :, 0], out[:, :, 2])


def test_encode_empty_batch():
    empty = torch.zeros(0, 3, 4, 4, dtype=torch.uint8)
    assert all(encode(empty, fmt) == [] for fmt in FORMATS)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"format": "TIFF"}, "use one of JPEG, PNG, WEBP, GIF"),
        ({"format": "jpeg"}, "use one of JPEG, PNG, WEBP, GIF"),
        ({"format": "JPEG", "quality": 0}, "quality must be an integer from 1 to 100"),
        ({"format": "WEBP", "quality": 101}, "quality must be an integer from 1 to 100"),
        ({"format": "JPEG", "quality": True}, "quality must be an integer from 1 to 100"),
        ({"format": "JPEG", "quality": 85.0}, "quality must be an integer from 1 to 100"),
        ({"format": "JPEG", "lossless": True}, "lossless"),
    ],
)
def test_encode_rejects_bad_arguments(kwargs, message):
    with pytest.raises(EncodeError) as e:
        encode(_batch("RGB", n=1), **kwargs)
    assert message in str(e.value)


def test_encode_rejects_too_large_for_webp():
    tall = torch.zeros(1, 3, 16384, 1, dtype=torch.uint8)
    with pytest.raises(EncodeError, match="16383"):
        encode(tall, "WEBP")


def test_cuda_batch_logic_with_a_stand_in_nvjpeg(monkeypatch):
    """The CUDA branch's control flow, run here with a stand-in for nvjpeg: one batched call; when
    it fails, file by file; a file nvjpeg refuses goes to libjpeg-turbo; truncated files never
    reach the decoder. (The real nvjpeg runs in the `device` tests where a GPU exists.)"""
    # importlib: the package attribute `gpu_worker.codecs.decode` is the function, not the module.
    dec = importlib.import_module("gpu_worker.codecs.decode")

    real = dec.tvio.decode_jpeg
    refused = corpus.jpeg_progressive()  # stands for a file nvjpeg cannot decode
    calls = []

    def stand_in(input, mode=dec.tvio.ImageReadMode.UNCHANGED, device="cpu"):
        calls.append((torch.device(device).type, len(input) if isinstance(input, list) else 1))
        items = input if isinstance(input, list) else [input]
        if torch.device(device).type == "cuda" and any(bytes(t.numpy()) == refused for t in items):
            raise RuntimeError("decode_jpegs_cuda, x.cpp:1, Failed to decode batch: 7")
        out = [real(t, mode=mode) for t in items]
        return out if isinstance(input, list) else out[0]

    monkeypatch.setattr(dec.tvio, "decode_jpeg", stand_in)
    monkeypatch.setattr(dec, "_to_device", lambda img, device: img)
    datas = [corpus.jpeg(), refused, corpus.truncated_jpeg(), corpus.jpeg_exif(6)]
    results = dec.decode_batch(datas, torch.device("cuda"))
    assert calls == [("cuda", 3), ("cuda", 1), ("cuda", 1), ("cpu", 1), ("cuda", 1)]
    assert isinstance(results[2], DecodeError)
    for data, res in zip([datas[0], datas[1], datas[3]], [results[0], results[1], results[3]]):
        assert torch.equal(res, decode(data, "cpu"))
    calls.clear()
    good = [corpus.jpeg(), corpus.jpeg_gray()]
    results = dec.decode_batch(good, torch.device("cuda"))
    assert calls == [("cuda", 2)]
    assert all(torch.equal(r, decode(d, "cpu")) for r, d in zip(results, good))
