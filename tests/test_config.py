"""Worker settings: defaults, the YAML file, environment overrides, clear errors."""

from __future__ import annotations

import dataclasses
import logging

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


@pytest.mark.parametrize("old, new, field", [("MAX_BATCH_PIXELS", "MAX_JOB_PIXELS", "max_job_pixels"),
                                             ("BATCH_MAX_PIXELS", "MAX_STACK_PIXELS", "max_stack_pixels")])
def test_a_former_environment_name_still_sets_the_renamed_setting(old, new, field, caplog):
    with caplog.at_level(logging.WARNING, logger="gpu_worker.config"):
        settings = load_settings(environ={old: "12345"})
    assert getattr(settings, field) == 12345
    assert settings == dataclasses.replace(Settings(), **{field: 12345})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and old in warnings[0] and f"now named {new}" in warnings[0]


def test_a_former_environment_name_overrides_the_file_s_new_name(tmp_path):
    # The shipped worker.yaml holds the new names; a deployment's old variable must still win.
    path = tmp_path / "worker.yaml"
    path.write_text("max_job_pixels: 7\nmax_stack_pixels: 8\n")
    settings = load_settings(path, environ={"MAX_BATCH_PIXELS": "70", "BATCH_MAX_PIXELS": "80"})
    assert (settings.max_job_pixels, settings.max_stack_pixels) == (70, 80)


def test_a_former_name_in_the_file_still_works(tmp_path, caplog):
    path = tmp_path / "worker.yaml"
    path.write_text("batch_max_pixels: 1000\n")
    with caplog.at_level(logging.WARNING, logger="gpu_worker.config"):
        assert load_settings(path, environ={}).max_stack_pixels == 1000
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: batch_max_pixels is now named max_stack_pixels; please rename it (the old name still works)"]


def test_when_both_names_are_set_the_new_one_wins(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="gpu_worker.config"):
        settings = load_settings(environ={"MAX_BATCH_PIXELS": "1", "MAX_JOB_PIXELS": "2"})
    assert settings.max_job_pixels == 2
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "MAX_JOB_PIXELS=2 is used and MAX_BATCH_PIXELS ignored" in warning
    path = tmp_path / "worker.yaml"
    path.write_text("batch_max_pixels: 1\nmax_stack_pixels: 2\n")
    assert load_settings(path, environ={}).max_stack_pixels == 2


def test_a_bad_value_under_a_former_name_names_the_new_setting():
    with pytest.raises(ValueError, match=r"max_job_pixels \(MAX_JOB_PIXELS\) must be an integer"):
        load_settings(environ={"MAX_BATCH_PIXELS": "lots"})
