"""GPU image worker: Pillow-exact operations on batched tensors, as a library and a RunPod worker."""
