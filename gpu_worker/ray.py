"""The worker's job path on Ray Data: a callable class for ``Dataset.map_batches``.

``pip install .[ray]``. Each Ray actor builds the worker's runtime once (device, settings from
the environment, as the worker does) and runs every batch it gets as one of the worker's batch
jobs: decode, operations and encode inside the actor, on its device (nvJPEG on a GPU actor), with
the worker's chunking and stacking. Input rows hold encoded image bytes, as
``ray.data.read_binary_files`` gives them; a row that fails (a corrupt file) gets its error in the
``error`` column and no ``image``, and the dataset goes on.

Example: a folder of photos into a folder of WebP thumbnails, one GPU per actor, 4 actors (Ray 2.51
and later take the actor count as ``compute=ActorPoolStrategy(size=...)``; ``concurrency=`` is
deprecated there)::

    import os
    import ray
    from gpu_worker.ray import ImageProcessor

    ray.init()
    photos = ray.data.read_binary_files("photos/", include_paths=True)
    thumbs = photos.map_batches(
        ImageProcessor,
        fn_constructor_kwargs={"operations": [{"type": "resize", "params": {"width": 256}}],
                               "output": {"format": "WEBP", "quality": 80}},
        batch_format="numpy", batch_size=64, num_gpus=1, compute=ray.data.ActorPoolStrategy(size=4))
    for batch in thumbs.iter_batches(batch_format="numpy", batch_size=256):
        for path, image, ext, error in zip(batch["path"], batch["image"], batch["extension"], batch["error"]):
            if error:  # a row that failed: its image is empty
                print(path, error)
                continue
            name = os.path.splitext(os.path.basename(path))[0]
            with open(os.path.join("thumbs", f"{name}.{ext}"), "wb") as f:
                f.write(image)

On CPU-only actors leave out ``num_gpus`` (``GPU_WORKER_DEVICE=cpu`` is then what they pick).
"""

from __future__ import annotations

import base64
import io
import re
from typing import Any, Optional, Sequence

import numpy as np

class ImageProcessor:
    """``Dataset.map_batches(ImageProcessor, fn_constructor_kwargs={...}, batch_format="numpy", ...)``.

    Columns a batch carries out: ``image`` (encoded bytes, or with ``arrays=True`` a uint8
    (H, W, C) array, C = 1 for grey; where the row failed: empty bytes, or a (0, 0, 0) array, so the
    column keeps one type across blocks), ``extension`` ("jpg"; "" where failed), ``error`` ("" where
    it worked), and every input column but the bytes (``path`` with include_paths).

    Args:
        operations: the job's operations (README, "The job format").
        output: the job's ``output`` (format, quality); default JPEG q85. With ``arrays`` the
            images are encoded losslessly (PNG) and decoded back: the arrays are the operations'
            pixels exactly.
        arrays: return decoded uint8 (H, W, C) arrays instead of encoded bytes.
        bytes_column: the input column with the encoded images (``read_binary_files``: "bytes").
        device: "cpu", "cuda", "cuda:N"; None: the worker's ``GPU_WORKER_DEVICE`` (auto: CUDA if
            the actor has one).
    """

    def __init__(self, operations: Sequence[dict], output: Optional[dict] = None, arrays: bool = False,
                 bytes_column: str = "bytes", device: Optional[str] = None) -> None:
        import dataclasses

        from gpu_worker.client.spec import spec_from
        from gpu_worker.config import load_settings
        from gpu_worker.runtime import build_runtime

        defaults = {"operations": list(operations), "output": dict(output or {})}
        if arrays:
            defaults["output"] = {"format": "PNG"}
        self.spec = spec_from(defaults, "ImageProcessor")  # ClientError naming the field, at once
        settings = load_settings()
        if device is not None:
            settings = dataclasses.replace(settings, gpu_worker_device=device)
        self.runtime = build_runtime(settings)
        self.arrays, self.bytes_column = arrays, bytes_column
        self._jobs = 0

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A numpy batch of encoded images -> the same rows with ``image``, ``extension`` and
        ``error`` in place of the bytes column."""
        datas = batch[self.bytes_column]
        images, extensions, errors = [], [], []
        step = self.runtime.settings.max_batch_items
        for start in range(0, len(datas), step):
            for result in self._run([bytes(d) for d in datas[start:start + step]]):
                if result.get("success"):
                    data = base64.b64decode(result["processed_image"].split("base64,", 1)[1])
                    images.append(_decode(data) if self.arrays else data)
                    extensions.append("npy" if self.arrays else self.spec.extension)
                    errors.append("")
                else:
                    images.append(np.zeros((0, 0, 0), np.uint8) if self.arrays else b"")
                    extensions.append("")
                    errors.append(re.sub(r"^images\[\d+\][.:]\s*", "", str(result.get("error") or "failed")))
        out = {name: column for name, column in batch.items() if name != self.bytes_column}
        out["image"] = _object_array(images)
        out["extension"] = np.array(extensions, dtype=object)
        out["error"] = np.array(errors, dtype=object)
        return out

    def _run(self, datas: list[bytes]) -> list[dict[str, Any]]:
        self._jobs += 1
        items = [{"image": {"base64": base64.b64encode(d).decode("ascii")}} if d else {"image": {"base64": ""}}
                 for d in datas]
        output = self.runtime.runner.run({"images": items, **self.spec.defaults}, f"ray-{self._jobs}", None)
        if "results" not in output:  # the whole job refused: every row gets its message
            return [{"success": False, "error": output.get("error", "failed")}] * len(datas)
        return output["results"]


def _decode(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        arr = np.asarray(im).copy()
    return arr[:, :, None] if arr.ndim == 2 else arr


def _object_array(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out
