"""gpu_worker.ray on a real local Ray cluster (``ray.init(num_cpus=2)``): a folder of real photos
through ``read_binary_files`` and ``map_batches``, outputs equal to the Pipeline's; a corrupt file
fails its own row."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import ray
from PIL import Image

from client_photos import write_photos
from gpu_worker import pipeline

# Ray's own modules warn about Ray's own deprecated settings (warnings are errors here).
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"),
              pytest.mark.filterwarnings("ignore::FutureWarning:ray.*")]

OPS = [{"type": "resize", "params": {"width": 40, "filter": "bicubic"}}, {"type": "filter", "params": {"name": "sharpen"}}]


@pytest.fixture(scope="module")
def cluster():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local cluster
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"GPU_WORKER_DEVICE": "cpu", "CPU_THREADS": "1"}})
    yield
    ray.shutdown()


def test_a_folder_through_map_batches_equals_the_pipeline(cluster, tmp_path):
    from gpu_worker.ray import ImageProcessor

    paths = write_photos(tmp_path, 24, formats=("PNG",))
    (tmp_path / "broken.png").write_bytes(paths[0].read_bytes()[:200])
    ds = ray.data.read_binary_files(str(tmp_path), include_paths=True)
    common = dict(batch_format="numpy", batch_size=8, compute=ray.data.ActorPoolStrategy(size=1))
    as_arrays = ds.map_batches(ImageProcessor, fn_constructor_kwargs={"operations": OPS, "arrays": True}, **common)
    as_png = ds.map_batches(ImageProcessor, fn_constructor_kwargs={"operations": OPS, "output": {"format": "PNG"}},
                            **common)
    arrays = {r["path"].rsplit("/", 1)[-1]: r for r in as_arrays.take_all()}
    pngs = {r["path"].rsplit("/", 1)[-1]: r for r in as_png.take_all()}
    assert set(arrays) == set(pngs) == {p.name for p in paths} | {"broken.png"}

    pipe = pipeline.Pipeline(OPS, device="cpu")
    for p in paths:
        with Image.open(p) as im:
            want = np.asarray(pipe(im.copy()))
        want3 = want[:, :, None] if want.ndim == 2 else want
        got = arrays[p.name]
        assert got["error"] == "" and got["extension"] == "npy"
        assert np.array_equal(got["image"], want3), p.name
        row = pngs[p.name]
        assert row["extension"] == "png" and row["error"] == ""
        with Image.open(io.BytesIO(row["image"])) as im:
            assert im.format == "PNG" and np.array_equal(np.asarray(im), want)
    for rows in (arrays, pngs):
        bad = rows["broken.png"]
        assert len(bad["image"]) == 0 and bad["extension"] == ""
        assert "PNG" in bad["error"] and not bad["error"].startswith("images[")


def test_bad_operations_are_refused_when_the_actor_is_made():
    from gpu_worker.client.s3 import ClientError
    from gpu_worker.ray import ImageProcessor

    with pytest.raises(ClientError, match=r"operations\[0\]"):
        ImageProcessor([{"type": "resize", "params": {"width": -1}}])
