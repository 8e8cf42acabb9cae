"""Worker settings: defaults, the YAML file, environment overrides, clear errors."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from gpu_worker.config import DEFAULT_CONFIG_PATH, Settings, load_settings


def test_the_shipped_yaml_lists_every_setting_at_its_default():
    shipped = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    assert sorted(shipped) == sorted(Settings.names())
    assert load_settings(environ={}) == Settings()


def test_environment_overrides_the_file(tmp_path):
    path = tmp_path / "worker.yaml"
    path.write_text("max_concurrency: 3\nbatch_wait_ms: 2.5\n")
    settings = load_settings(path, environ={"MAX_CONCURRENCY": "8", "CACHE_MAX_BYTES": "5e6", "BUCKET_NAME": "b"})
    assert settings == dataclasses.replace(Settings(), max_concurrency=8, batch_wait_ms=2.5,
                                           cache_max_bytes=5_000_000, bucket_name="b")
    assert load_settings(path, environ={"GPU_WORKER_CONFIG": "ignored"}).max_concurrency == 3
    assert load_settings(path, environ={"CUDA_JPEG_CODEC": "libjpeg"}).cuda_jpeg_codec == "libjpeg"


@pytest.mark.parametrize("environ, message", [
    ({"MAX_CONCURRENCY": "four"}, r"max_concurrency \(MAX_CONCURRENCY\) must be an integer, got 'four'"),
    ({"MAX_OPERATIONS": "2.5"}, r"max_operations \(MAX_OPERATIONS\) must be an integer"),
    ({"FETCH_TIMEOUT_S": "nan"}, r"fetch_timeout_s \(FETCH_TIMEOUT_S\) must be a finite number"),
    ({"CACHE_MAX_BYTES": "-1"}, r"cache_max_bytes \(CACHE_MAX_BYTES\) must not be negative"),
    ({"CUDA_JPEG_CODEC": "turbo"}, r"cuda_jpeg_codec \(CUDA_JPEG_CODEC\) must be one of nvjpeg, libjpeg, hybrid, got 'turbo'"),
    ({"CUDA_COMPILE": "3"}, r"cuda_compile \(CUDA_COMPILE\) must be one of 0, 1, 2, got '3'"),
])
def test_bad_values_name_the_setting(environ, message):
    with pytest.raises(ValueError, match=message):
        load_settings(environ=environ)


def test_unknown_keys_in_the_file_are_refused(tmp_path):
    path = tmp_path / "worker.yaml"
    path.write_text("max_concurency: 3\n")
    with pytest.raises(ValueError, match="unknown setting"):
        load_settings(path, environ={})
