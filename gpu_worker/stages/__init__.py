"""The stages of a job, each a function over the job's items (gpu_worker.jobs runs them in order):

- :mod:`~gpu_worker.stages.item`: the per-item record and how a stage runs over the items;
- :mod:`~gpu_worker.stages.policy`: which codec runs where, decided once;
- :mod:`~gpu_worker.stages.intake`: validate, fetch, probe and limits, cache lookup;
- :mod:`~gpu_worker.stages.device`: decode, operations, encode, one chunk at a time;
- :mod:`~gpu_worker.stages.deliver`: cache store, upload, the response.
"""
