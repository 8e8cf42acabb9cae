"""kernels.resize against Pillow's Image.resize, on real photos, every filter and mode.

The kernel is integer-exact (Pillow's own fixed-point weights and int32 sums), so the measured
difference is 0 everywhere; the parity tests still use the shared tolerance table, and
``test_bit_exact`` pins the exactness on a few cases.
"""

from __future__ import annotations

import importlib
import threading

import pytest
import torch
from PIL import Image

from conftest import cuda_only
from kernels import context as kernel_context, resize_cpu, resize_cuda, resize_weights
from kernels.context import KernelContext
from kernels.resize import RESAMPLING_FILTERS, resize
from photos import COLOR_PHOTOS, max_abs_diff, photo, pil_array, sample, to_array, to_tensor
from tolerances import PILLOW_ATOL

# The module itself (kernels/__init__.py re-exports the function under the same name).
resize_module = importlib.import_module("kernels.resize")

PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}

#: (source (width, height), destination (width, height)), in Pillow's order.
CASES = [
    ((97, 61), (40, 71)),  # shrink width, grow height
    ((97, 61), (1, 1)),
    ((1, 1), (5, 3)),
    ((2, 2), (7, 7)),  # NEAREST's accumulated coordinate differs from (j + 0.5) * scale here
    ((257, 193), (100, 75)),
    ((97, 61), (97, 61)),  # same size: a copy
    ((97, 61), (97, 30)),  # height only: one pass
    ((61, 97), (250, 97)),  # width only: one pass
    ((61, 97), (250, 13)),  # Pillow 13 runs the vertical pass first here
    ((97, 61), (90, 46)),  # height shrinks by 15 > 2 * 7: vertical first
    ((97, 61), (90, 47)),  # height shrinks by 14 = 2 * 7: horizontal first
    ((3, 5), (11, 2)),
    ((257, 193), (33, 190)),
]
MODES = ("RGB", "L", "RGBA", "LA")


def photo_in(mode: str, size: tuple[int, int], name: str = "astronaut.png") -> Image.Image:
    """A real photo crop in any of our modes (LA made from the RGBA sample)."""
    if mode == "LA":
        return sample("RGBA", size, name).convert("LA")
    return sample(mode, size, name)


def ours(im: Image.Image, dst: tuple[int, int], filter: str, device):
    """Our resize of a PIL image to Pillow-order ``dst``, as a host (H, W, C) array."""
    out = resize(to_tensor(im, device), (dst[1], dst[0]), filter)
    return to_array(out)


@pytest.mark.parametrize("filter", RESAMPLING_FILTERS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("src,dst", CASES, ids=[f"{s[0]}x{s[1]}-{d[0]}x{d[1]}" for s, d in CASES])
def test_matches_pillow(device, mode, filter, src, dst):
    for name in ("astronaut.png", "coffee.png"):
        im = photo_in(mode, src, name)
        expected = pil_array(im.resize(dst, PIL_FILTERS[filter]))
        assert max_abs_diff(ours(im, dst, filter, device), expected) <= PILLOW_ATOL["resize"], name


@pytest.mark.parametrize("filter", RESAMPLING_FILTERS)
@pytest.mark.parametrize("mode", MODES)
def test_bit_exact(device, mode, filter):
    # Downscale by ~2.6 (wide filter windows) and upscale by ~1.7, on every photo.
    for name in COLOR_PHOTOS:
        for src, dst in (((257, 193), (97, 73)), ((97, 61), (163, 105))):
            im = photo_in(mode, src, name)
            expected = pil_array(im.resize(dst, PIL_FILTERS[filter]))
            assert max_abs_diff(ours(im, dst, filter, device), expected) == 0, (name, src, dst)


@pytest.mark.parametrize("filter", RESAMPLING_FILTERS)
@pytest.mark.parametrize("mode", ("RGB", "RGBA"))
def test_batch_equals_per_image(device, mode, filter):
    batch = torch.cat([to_tensor(sample(mode, (97, 61), name), device) for name in COLOR_PHOTOS])
    together = resize(batch, (40, 71), filter)
    for i in range(batch.shape[0]):
        assert torch.equal(together[i : i + 1], resize(batch[i : i + 1], (40, 71), filter))


@pytest.mark.parametrize("filter", RESAMPLING_FILTERS)
@pytest.mark.parametrize("mode", ("RGB", "RGBA"))
def test_input_unchanged_dtype_device_kept(device, mode, filter):
    images = to_tensor(sample(mode, (97, 61)), device)
    before = images.clone()
    for size in ((30, 40), (61, 97), (80, 97), (61, 150)):
        out = resize(images, size, filter)
        assert out.dtype == torch.uint8
        assert out.device == images.device
        assert out.shape == (1, images.shape[1], *size)
        assert out.data_ptr() != images.data_ptr()  # a new tensor, even at the same size
    assert torch.equal(images, before)


@pytest.mark.parametrize("filter", RESAMPLING_FILTERS)
@pytest.mark.parametrize("channels", (1, 2, 3, 4))
def test_empty_batch(device, channels, filter):
    images = torch.empty((0, channels, 10, 12), dtype=torch.uint8, device=device)
    out = resize(images, (5, 7), filter)
    assert out.shape == (0, channels, 5, 7)
    assert out.dtype == torch.uint8 and out.device == images.device


@pytest.mark.parametrize("bad", ["box", "hamming", "LANCZOS", "", None, 1])
def test_bad_filter(bad):
    images = torch.zeros((1, 3, 4, 4), dtype=torch.uint8)
    with pytest.raises(ValueError, match="nearest, bilinear, bicubic, lanczos") as info:
        resize(images, (2, 2), bad)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize(
    "bad", [(0, 5), (5, 0), (-1, 5), (5,), (1, 2, 3), (2.5, 3), (True, 3), "ab", None, 7]
)
def test_bad_size(bad):
    images = torch.zeros((1, 3, 4, 4), dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"out_height, out_width") as info:
        resize(images, bad)
    assert repr(bad) in str(info.value)


def test_bad_images():
    with pytest.raises(TypeError):
        resize(torch.zeros((1, 3, 4, 4)), (2, 2))
    with pytest.raises(ValueError):
        resize(torch.zeros((3, 4, 4), dtype=torch.uint8), (2, 2))


def test_weight_tables_are_cached(device):
    table = resize_module._resample_table
    first = table(97, 40, "lanczos", device)
    assert table(97, 40, "lanczos", device) is first
    assert table(97, 40, "bicubic", device) is not first
    index, weight = first
    assert index.device.type == weight.device.type == device.type
    assert index.dtype == torch.int64 and weight.dtype == torch.int32
    # Each output pixel's fixed-point weights sum to ~1.0 (2**22), as Pillow's normalisation.
    assert (weight.sum(0) - (1 << 22)).abs().max() <= weight.shape[0]

    # The CPU's block layouts hold the same weights, scaled by 2**-22, each output's in one row.
    expected = table(97, 40, "lanczos", torch.device("cpu"))[1].sum(0)
    gathered = resize_cpu.gathered_band(97, 40, "lanczos").weight
    per_output = gathered.reshape(-1, gathered.shape[-1])[:40].sum(1) * (1 << 22)
    assert torch.equal(per_output.round().to(torch.int32), expected)
    phased = resize_cpu.phased_band(97, 40, "lanczos")  # 4 phases of 10 outputs, one block each
    per_output = torch.cat([phase.weight[0].sum(1) for phase in phased.phases]) * (1 << 22)
    assert torch.equal(per_output.round().to(torch.int32), expected)

    # The CPU reads its block layouts, other devices the per-tap table; both cached.
    used = resize_cpu.phased_band if device.type == "cpu" else table
    images = to_tensor(sample("RGB", (96, 64)), device)
    resize(images, (48, 40), "lanczos")  # warms the tables for this size
    hits = used.cache_info().hits
    resize(images, (48, 40), "lanczos")
    assert used.cache_info().hits > hits

    nearest = resize_weights.nearest_table
    assert nearest(2, 7, device) is nearest(2, 7, device)


def test_phased_layout_periods_and_phases():
    band = resize_cpu.phased_band(1920, 800, "lanczos")  # 12/5: blocks of 10 outputs, 24 inputs apart
    assert (band.period_out, band.period_in, len(band.phases)) == (10, 24, 1)
    assert band.phases[0].offset < 0  # the first window starts before the image (its taps there weigh 0)
    band = resize_cpu.phased_band(4032, 800, "lanczos")  # a phone photo: 126/25 in five phases of 5
    assert (band.period_out, band.period_in) == (25, 126)
    assert [phase.first_out for phase in band.phases] == [0, 5, 10, 15, 20]
    assert resize_cpu.phased_band(1920, 797, "lanczos") is None  # 797 is prime: 80 phases, gathered


def test_reference_size_bit_exact(device):
    # The benchmark's reference resize, 1920x1080 -> 800x450, where the CPU pass runs in chunks.
    im = photo("astronaut.png").convert("RGB").resize((1920, 1080))
    for filter in ("lanczos", "bicubic"):
        expected = pil_array(im.resize((800, 450), PIL_FILTERS[filter]))
        assert max_abs_diff(ours(im, (800, 450), filter, device), expected) == 0, filter


@pytest.mark.parametrize("seed", range(4))
def test_cpu_passes_equal_the_tap_loop(seed):
    """The CPU's matmul passes give the tap loop's integers on random sizes and pixels.

    The tap loop is Pillow's int32 arithmetic written out (it is what CUDA runs); the matmul
    passes rely on float64 being exact for these sums. Sizes mix small ratios (the strided layout)
    and others (the gathered one), along both dimensions; all-0/255 images take every clamp, big
    downscales have windows of hundreds of taps, and 48 planes are cut into chunks.
    """
    generator = torch.Generator().manual_seed(seed)

    def pick(options):
        return options[int(torch.randint(len(options), (1,), generator=generator))]

    for _ in range(60):
        in_size = pick([1, 2, 3, 5, 17, 96, 97, 300, 1000, 1920, 2500, 4032])
        out_size = pick([1, 2, 3, 7, 40, 48, 97, 250, 797, 800, 801, max(1, in_size // 37), in_size * 2])
        filter = pick(["bilinear", "bicubic", "lanczos"])
        shape = (pick([1, 3, 4, 48]), pick([1, 2, 5, 33]), in_size)
        if pick([True, False]):
            planes = torch.randint(0, 2, shape, generator=generator, dtype=torch.uint8) * 255
        else:
            planes = torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)
        images = planes.unsqueeze(0)  # (1, P, rows, in_size)
        for dim, source in ((3, images), (2, images.transpose(2, 3).contiguous())):
            # The tap loop as CUDA runs it (the same function, on the CPU here).
            expected = resize_module._taps_pass(source, out_size, filter, dim)
            got = resize_cpu.resample_pass(source, out_size, filter, dim)
            assert torch.equal(got, expected), (dim, in_size, out_size, filter, shape)


@pytest.mark.parametrize("filter", ("bilinear", "lanczos"))
def test_input_strides_do_not_change_the_pixels(device, filter):
    # A decoded JPEG is channels-last, a crop is a view with row padding: the CPU passes read
    # such planes where they lie instead of copying them first.
    image = to_tensor(sample("RGB", (200, 120)), device)
    channels_last = image.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    cropped = torch.cat([image, image], dim=3)[:, :, :, 200:]  # the second copy: rows 400 apart
    assert not channels_last.is_contiguous() and not cropped.is_contiguous()
    for size in ((50, 80), (120, 50), (48, 200), (31, 77)):  # small ratios, one pass, no small ratio
        expected = resize(image, size, filter)
        assert torch.equal(resize(channels_last, size, filter), expected), size
        assert torch.equal(resize(cropped, size, filter), expected), size


def test_strided_chunk_loops_run_compiled_and_as_python_alike():
    # TorchScript runs the chunk loops without Python's interpreter lock (two images resize in
    # parallel); compiling must not leak torch's deprecation warning, and the compiled loop must
    # give the Python loop's bytes.
    import warnings

    resize_cpu._without_the_gil.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compiled = resize_cpu._without_the_gil(resize_cpu._width_chunks)
    assert isinstance(compiled, torch.jit.ScriptFunction)

    planes = list(to_tensor(sample("RGB", (200, 120)))[0])  # 3 planes (120, 200)
    band = resize_cpu.phased_band(200, 77, "lanczos")  # 200/77: 8 phases
    assert len(band.phases) > 1
    out_size = 77
    pad_left = -min(phase.offset for phase in band.phases)
    width = pad_left + max([200] + [ph.offset + (ph.weight.shape[0] - 1) * band.period_in + ph.weight.shape[2]
                                    for ph in band.phases])
    chunks = [(p, r0) for p in range(3) for r0 in range(0, 120, 50)]
    outs = [torch.empty((3, 120, out_size), dtype=torch.uint8) for _ in range(2)]
    for run, out in zip((compiled, resize_cpu._width_chunks), outs):
        run(planes, chunks, out, [ph.weight_t for ph in band.phases], [pad_left + ph.offset for ph in band.phases],
            [ph.first_out for ph in band.phases], band.period_in, band.period_out, pad_left, width, 50)
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(outs[0], resize(torch.stack(planes)[None], (120, out_size), "lanczos")[0])


# --- CUDA: the compiled passes --------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(2))
def test_gather_sum_passes_equal_the_tap_loop(device, seed):
    """The sum that CUDA compiles (kernels.resize_cuda), run eagerly here, gives the tap loop's
    bytes along both dimensions, on random sizes, filters and pixels."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(6):
        planes_n, rows, cols = (int(v) for v in torch.randint(1, 90, (3,), generator=generator))
        out_size = int(torch.randint(1, 120, (1,), generator=generator))
        filter = RESAMPLING_FILTERS[1 + int(torch.randint(0, 3, (1,), generator=generator))]
        planes = torch.randint(0, 256, (planes_n, rows, cols), dtype=torch.uint8, generator=generator).to(device)
        index, weight = resize_module._resample_table(rows, out_size, filter, planes.device)
        expected = resize_module._resample_rows_taps(planes, out_size, filter)
        assert torch.equal(resize_cuda.gather_sum_rows(planes, index, weight), expected)
        index, weight = resize_module._resample_table(cols, out_size, filter, planes.device)
        expected = resize_module._resample_rows_taps(planes.transpose(1, 2).contiguous(), out_size, filter)
        assert torch.equal(resize_cuda.gather_sum_cols(planes, index, weight), expected.transpose(1, 2))


@cuda_only
@pytest.mark.cuda
def test_cuda_resize_runs_the_compiled_passes_and_matches_the_eager_loop():
    image = to_tensor(sample("RGBA", (203, 131))).cuda()  # premultiplied, both passes
    compiled = resize(image, (60, 97), "lanczos")
    assert not resize_cuda.compile_failed() and set(resize_cuda._compiled) == {1, 2}, "torch.compile fell back to eager"
    with kernel_context.using(KernelContext(compiled_resize=False)):  # the worker with CUDA_COMPILE=0
        eager = resize(image, (60, 97), "lanczos")
    assert torch.equal(compiled, eager)


@pytest.fixture
def fresh_compiled_passes():
    """kernels.resize_cuda with nothing compiled yet; its state is restored afterwards."""
    was_failed, was_compiled = resize_cuda._failed, dict(resize_cuda._compiled)
    resize_cuda._compiled.clear()
    resize_cuda._failed = False
    yield resize_cuda
    assert resize_cuda.wait_until_compiled(timeout_s=120)
    resize_cuda._compiled.clear()
    resize_cuda._compiled.update(was_compiled)
    resize_cuda._failed = was_failed


def _pass_inputs(dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    planes = torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8, generator=torch.Generator().manual_seed(dim))
    index, weight = resize_module._resample_table(planes.shape[dim], 12, "lanczos", planes.device)
    return planes, index, weight


def test_a_background_compile_leaves_calls_to_the_eager_loop_until_it_is_done(fresh_compiled_passes, monkeypatch):
    """warm_up(background=True) returns while the compiler is still held back; calls meanwhile
    return None (the caller's eager loop) instead of waiting; once done they use the kernels.
    The compile is real (Inductor's CPU backend), only its start is gated."""
    gate = threading.Event()
    real_compile = torch.compile

    def gated_compile(*args, **kwargs):
        assert gate.wait(timeout=60)
        return real_compile(*args, **kwargs)

    monkeypatch.setattr(torch, "compile", gated_compile)
    resize_cuda.warm_up(torch.device("cpu"), background=True)
    rows, cols = _pass_inputs(1), _pass_inputs(2)
    assert resize_cuda.compiled_pass(*rows, 1) is None and resize_cuda.compiled_pass(*cols, 2) is None
    assert not resize_cuda.wait_until_compiled(timeout_s=0.1)
    resize_cuda.warm_up(torch.device("cpu"), background=True)  # a second warm-up (fitness check) waits for nothing
    gate.set()
    assert resize_cuda.wait_until_compiled(timeout_s=120)
    assert not resize_cuda.compile_failed() and set(resize_cuda._compiled) == {1, 2}
    assert torch.equal(resize_cuda.compiled_pass(*rows, 1), resize_cuda.gather_sum_rows(*rows))
    assert torch.equal(resize_cuda.compiled_pass(*cols, 2), resize_cuda.gather_sum_cols(*cols))


def test_a_background_compile_that_fails_leaves_the_eager_loop_on(fresh_compiled_passes, monkeypatch, caplog):
    def no_compiler(*args, **kwargs):
        raise RuntimeError("Failed to find C compiler")

    monkeypatch.setattr(torch, "compile", no_compiler)
    with caplog.at_level("WARNING", logger="kernels.resize_cuda"):
        resize_cuda.warm_up(torch.device("cpu"), background=True)
        assert resize_cuda.wait_until_compiled(timeout_s=60)
    assert "torch.compile failed for the resize passes" in caplog.text
    assert resize_cuda.compile_failed() and resize_cuda.compiled_pass(*_pass_inputs(2), 2) is None


def test_compiled_passes_from_several_threads_equal_the_eager_sum(fresh_compiled_passes):
    """The compile path that CUDA takes, run here through Inductor's CPU backend (a real compile,
    ~5-20 s): one compiled kernel per pass serves random sizes and filters from four threads at
    once (calls are serialised: Dynamo is not thread-safe) and gives the eager sum's bytes."""
    failures = []

    def work(seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        for _ in range(4):
            rows, cols, out_size = (int(v) for v in torch.randint(2, 70, (3,), generator=generator))
            filter = RESAMPLING_FILTERS[1 + int(torch.randint(0, 3, (1,), generator=generator))]
            planes = torch.randint(0, 256, (3, rows, cols), dtype=torch.uint8, generator=generator)
            for dim, size, eager in ((1, rows, resize_cuda.gather_sum_rows), (2, cols, resize_cuda.gather_sum_cols)):
                index, weight = resize_module._resample_table(size, out_size, filter, planes.device)
                got = resize_cuda.compiled_pass(planes, index, weight, dim)
                if got is None or not torch.equal(got, eager(planes, index, weight)):
                    failures.append((seed, dim, rows, cols, out_size, filter))

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert not resize_cuda.compile_failed() and set(resize_cuda._compiled) == {1, 2}
    # A caller whose context asks for the eager loop gets None (its caller runs the loop).
    planes, index, weight = _pass_inputs(2)
    assert resize_cuda.compiled_pass(planes, index, weight, 2) is not None
    with kernel_context.using(KernelContext(compiled_resize=False)):
        assert resize_cuda.compiled_pass(planes, index, weight, 2) is None


def test_a_compiler_that_fails_turns_the_compiled_passes_off(fresh_compiled_passes, monkeypatch, caplog):
    def no_compiler(*args, **kwargs):
        raise RuntimeError("Failed to find C compiler")  # what Triton says without gcc

    monkeypatch.setattr(torch, "compile", no_compiler)
    planes, index, weight = _pass_inputs(2)
    with caplog.at_level("WARNING", logger="kernels.resize_cuda"):
        assert resize_cuda.compiled_pass(planes, index, weight, 2) is None
    assert "torch.compile failed for the resize passes" in caplog.text and "C compiler" in caplog.text
    assert resize_cuda.compile_failed() and not resize_cuda._compiled
    assert resize_cuda.compiled_pass(planes, index, weight, 2) is None  # off: no second attempt
