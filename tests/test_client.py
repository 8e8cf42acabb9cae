"""The bulk client (``python -m gpu_worker.client``) against the real local endpoint on 127.0.0.1,
a real S3 server (moto's, on 127.0.0.1), a loopback HTTP server for URL sources, and in-process.

Photos are a few hundred small crops of scikit-image's photos (tests/client_photos.py). Nothing
is mocked: jobs go through ``python -m gpu_worker serve`` and the worker's handler.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import numpy as np
import pytest
import requests
from PIL import Image

from client_photos import write_photos
from gpu_worker.client import cli
from gpu_worker.client.breaker import Breaker
from gpu_worker.client.manifest import FILE_NAME, S3Manifest
from gpu_worker.client.manifest import record as manifest_record
from gpu_worker.client.packing import base64_size, pack
from gpu_worker.client.run import Options, process
from gpu_worker.client.s3 import ClientError, parse_s3
from gpu_worker.client.sources import Item, list_items
from gpu_worker.client.spec import spec_from
from gpu_worker.client.submit import RetryPolicy
from gpu_worker.formats import SOURCE_EXTENSIONS
from http_servers import LoopbackServer
from local_endpoint import ENDPOINT_ID, start_endpoint
from photos import photo

ROOT = Path(__file__).resolve().parents[1]
OPS = {"operations": [{"type": "resize", "params": {"width": 48}}, {"type": "filter", "params": {"name": "sharpen"}}],
       "output": {"format": "JPEG", "quality": 85}}
# UPLOAD_THRESHOLD_BYTES: a job's results return inline up to 1 MB of base64 (no bucket configured):
# the tests' 48-px results are far under it; test_results_too_large_to_return_split_the_job passes it.
SERVER_ENV = {"GPU_WORKER_DEVICE": "cpu", "CPU_THREADS": "2", "MAX_CONCURRENCY": "2", "SERVE_QUEUE_SIZE": "2",
              "RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS": "true", "UPLOAD_THRESHOLD_BYTES": "1000000"}
RESULT_INLINE_LIMIT = 1_000_000
FAST_RETRY = ["--retries", "8", "--backoff", "0.05"]


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    """240 photos (JPEG and PNG, 64-128 px) in three nested folders."""
    root = tmp_path_factory.mktemp("photos")
    write_photos(root, 240)
    return root


@pytest.fixture(scope="module")
def ops_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ops") / "ops.json"
    path.write_text(json.dumps(OPS))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The local endpoint: 2 slots, a queue of 2 (so a client with more jobs in flight meets 429s)."""
    proc, base = start_endpoint(tmp_path_factory.mktemp("serve") / "serve.log", env=SERVER_ENV)
    yield base
    proc.stop()
    print(f"--- server log tail:\n{proc.log_tail(30)}")


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv("RUNPOD_API_KEY", "local-key")  # the server has no API_KEY: any key is taken


def run_cli(capsys, *argv: str) -> tuple[int, dict]:
    """``gpu-worker-client process ... --json`` in this process: (exit status, summary)."""
    code, summary, _ = run_cli_err(capsys, *argv)
    return code, summary


def run_cli_err(capsys, *argv: str) -> tuple[int, dict, str]:
    """:func:`run_cli` and what it wrote on stderr."""
    code = cli.main(["process", *argv, "--json", "--no-progress"])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if captured.out.strip() else {}), captured.err


def remote(base: str) -> list[str]:
    return ["--endpoint", ENDPOINT_ID, "--base-url", f"{base}/v2"]


def outputs(dest: Path) -> dict[str, Path]:
    return {p.relative_to(dest).as_posix(): p for p in dest.rglob("*") if p.is_file() and not p.name.startswith(".")}


def manifest_lines(dest: Path) -> list[dict]:
    path = dest / FILE_NAME
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def expected_outputs(src: Path) -> set[str]:
    return {p.relative_to(src).with_suffix(".jpg").as_posix() for p in src.rglob("*") if p.is_file()}


def rejected_429(base: str) -> float:
    text = requests.get(f"{base}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('gpu_worker_rejected_requests_total{reason="queue_full"}'))


# --- a folder through the local server ------------------------------------------------------------


def test_folder_through_the_server_then_rerun_does_nothing(server, photo_dir, ops_file, tmp_path, capsys, api_key):
    dest = tmp_path / "out"
    before_429 = rejected_429(server)
    code, summary = run_cli(capsys, str(photo_dir), "--ops", str(ops_file), "--out", str(dest), *remote(server),
                            "--batch", "16", "--concurrency", "6", *FAST_RETRY)
    assert code == 0, summary
    assert (summary["listed"], summary["done"], summary["failed"], summary["skipped"]) == (240, 240, [], 0)
    # 6 jobs in flight against 2 slots and a queue of 2: the server answered 429, the client retried.
    assert rejected_429(server) > before_429

    written = outputs(dest)
    assert set(written) == expected_outputs(photo_dir)
    sources = {p.relative_to(photo_dir).as_posix(): p for p in photo_dir.rglob("*") if p.is_file()}
    assert summary["bytes_in"] == sum(p.stat().st_size for p in sources.values())
    assert summary["bytes_out"] == sum(p.stat().st_size for p in written.values())
    for rel, src in list(sources.items())[::20]:
        with Image.open(src) as a, Image.open(written[str(Path(rel).with_suffix(".jpg"))]) as b:
            assert b.format == "JPEG" and b.width == 48 and b.height == max(1, int(a.height * 48 / a.width))
            assert b.mode == ("L" if a.mode == "L" else "RGB")
    records = manifest_lines(dest)
    assert sorted(r["source"] for r in records) == sorted(sources)

    mtimes = {rel: p.stat().st_mtime_ns for rel, p in written.items()}
    code, again = run_cli(capsys, str(photo_dir), "--ops", str(ops_file), "--out", str(dest), *remote(server))
    assert code == 0 and (again["done"], again["skipped"], again["failed"]) == (0, 240, [])
    assert {rel: p.stat().st_mtime_ns for rel, p in outputs(dest).items()} == mtimes
    assert len(manifest_lines(dest)) == 240


def test_results_too_large_to_return_split_the_job(server, tmp_path, capsys, api_key):
    """A job whose results together pass the server's inline limit (and no bucket) fails whole;
    the client runs its images again in halves until they come back."""
    src = tmp_path / "src"
    write_photos(src, 8, formats=("PNG",))
    ops = json_file(tmp_path, {"operations": [{"type": "resize", "params": {"width": 480, "height": 480,
                                                                          "maintain_aspect": False}}],
                               "output": {"format": "PNG"}})
    code, summary = run_cli(capsys, str(src), "--ops", ops, "--out", str(tmp_path / "out"), *remote(server),
                            "--batch", "8")
    assert code == 0 and (summary["done"], summary["failed"]) == (8, []), summary
    results = outputs(tmp_path / "out")
    sizes = [base64_size(p.stat().st_size) for p in results.values()]
    assert sum(sizes) > RESULT_INLINE_LIMIT > max(sizes)  # one job of 8 could not return them
    for path in results.values():
        with Image.open(path) as im:
            assert im.size == (480, 480) and im.format == "PNG"


def test_other_operations_redo_every_image(server, photo_dir, tmp_path, capsys, api_key):
    src = tmp_path / "src"
    write_photos(src, 12)
    dest = tmp_path / "out"
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps([{"type": "resize", "params": {"width": 32}}]))
    second.write_text(json.dumps([{"type": "resize", "params": {"width": 40}}]))
    assert run_cli(capsys, str(src), "--ops", str(first), "--out", str(dest), *remote(server))[1]["done"] == 12
    code, summary = run_cli(capsys, str(src), "--ops", str(second), "--out", str(dest), *remote(server))
    assert (code, summary["done"], summary["skipped"]) == (0, 12, 0)
    with Image.open(next(iter(outputs(dest).values()))) as im:
        assert im.width == 40


def test_server_stopped_half_way_rerun_finishes_the_rest_writing_nothing_twice(server, photo_dir, tmp_path, capsys,
                                                                              api_key):
    """The server stopped for good half way: the breaker ends the run (the images of the jobs sent
    after the stop failed, the rest not attempted); a run against the dead server stops after
    --give-up-after jobs with exit status 3; the rerun against a live one does only the rest."""
    dest = tmp_path / "out"
    proc, base = start_endpoint(tmp_path / "serve1.log", env=SERVER_ENV)
    options = Options(sources=[str(photo_dir)], spec=spec_from(OPS), dest=str(dest), endpoint=ENDPOINT_ID,
                      api_key="local-key", base_url=f"{base}/v2", batch=8, concurrency=1,
                      retry=RetryPolicy(retries=1, backoff_s=0.05), poll_s=0.1, progress=False, give_up_after=3)
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("summary", process(options)))
    worker.start()
    try:
        deadline = time.monotonic() + 120
        while len(manifest_lines(dest)) < 40:
            assert time.monotonic() < deadline and worker.is_alive(), "the client ended before 40 images were done"
            time.sleep(0.02)
    finally:
        proc.stop()
    stopped = time.monotonic()
    worker.join(timeout=120)
    ended_after = time.monotonic() - stopped
    first = result["summary"]
    assert 40 <= first.done < 240
    # One job at a time: the one in flight when the server went, then two more, all refused the
    # same way; the other jobs were never sent.
    assert len(first.failed) == 3 * 8, first.failed
    assert all("network" in f["error"] or "gone" in f["error"] for f in first.failed), first.failed[:3]
    assert first.not_attempted == 240 - first.done - len(first.failed) > 0
    assert "3 jobs in a row failed the same way (network: ConnectionError)" in first.stopped, first.stopped
    written = outputs(dest)
    assert len(written) == first.done == len(manifest_lines(dest))
    mtimes = {rel: p.stat().st_mtime_ns for rel, p in written.items()}

    # The server is gone for good: the command line stops after 2 jobs, sends nothing else.
    code, dead, err = run_cli_err(capsys, str(photo_dir), "--ops", json_file(tmp_path, OPS), "--out", str(dest),
                                  "--endpoint", ENDPOINT_ID, "--base-url", f"{base}/v2", "--batch", "8",
                                  "--concurrency", "1", "--retries", "1", "--backoff", "0.05", "--give-up-after", "2")
    assert code == 3, dead
    left = 240 - first.done
    assert (dead["done"], dead["skipped"], len(dead["failed"]), dead["not_attempted"]) == (0, first.done, 16, left - 16)
    assert all("Connection" in f["error"] for f in dead["failed"]), dead["failed"][:2]
    assert "endpoint looks down" in dead["stopped"] and "endpoint looks down" in err
    assert len(manifest_lines(dest)) == first.done

    options.base_url, options.concurrency = f"{server}/v2", 4  # the rerun: another server, the same DEST
    second = process(options)
    assert (second.done, second.skipped, second.failed, second.not_attempted, second.stopped) == (left, first.done,
                                                                                               [], 0, "")
    after = outputs(dest)
    assert set(after) == expected_outputs(photo_dir)
    assert all(after[rel].stat().st_mtime_ns == mtime for rel, mtime in mtimes.items())  # none written again
    records = manifest_lines(dest)
    assert len(records) == 240 and len({r["source"] for r in records}) == 240
    print(f"the client ended {ended_after:.1f} s after the server was stopped")


def test_bad_files_are_reported_and_the_rest_done(server, ops_file, tmp_path, capsys, api_key):
    src = tmp_path / "src"
    good = write_photos(src, 20)
    (src / "empty.jpg").write_bytes(b"")
    (src / "text.png").write_text("not an image")
    whole = good[0].read_bytes()
    (src / "trip" / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    (src / "notes.txt").write_text("not listed: not an image extension")
    dest = tmp_path / "out"
    code, summary = run_cli(capsys, str(src), "--ops", str(ops_file), "--out", str(dest), *remote(server), "--batch", "8")
    assert code == 1
    assert summary["done"] == 20 and summary["listed"] == 23
    failed = {f["source"]: f["error"] for f in summary["failed"]}
    assert set(failed) == {"empty.jpg", "text.png", "trip/truncated.jpg"}
    assert failed["empty.jpg"] == "the file is empty (0 bytes)"  # refused by the client, not sent
    assert "not a recognised image" in failed["text.png"]
    assert not any(e.startswith("images[") for e in failed.values())
    assert set(outputs(dest)) == {p.relative_to(src).with_suffix(".jpg").as_posix() for p in good}


def test_local_equals_the_server(server, tmp_path, capsys, api_key):
    src = tmp_path / "src"
    write_photos(src, 24, formats=("PNG",))
    ops = tmp_path / "ops.json"
    ops.write_text(json.dumps({"operations": [{"type": "resize", "params": {"width": 50, "filter": "bicubic"}},
                                              {"type": "adjust", "params": {"contrast": 1.3}}],
                               "output": {"format": "PNG"}}))
    code_r, by_server = run_cli(capsys, str(src), "--ops", str(ops), "--out", str(tmp_path / "r"), *remote(server))
    code_l, by_local = run_cli(capsys, str(src), "--ops", str(ops), "--out", str(tmp_path / "l"), "--local")
    assert code_r == code_l == 0 and by_server["done"] == by_local["done"] == 24
    r, loc = outputs(tmp_path / "r"), outputs(tmp_path / "l")
    assert set(r) == set(loc) and len(r) == 24
    for rel in r:
        with Image.open(r[rel]) as a, Image.open(loc[rel]) as b:
            assert a.size == b.size and a.mode == b.mode
            assert np.array_equal(np.asarray(a), np.asarray(b)), rel


def test_json_summary_from_the_command_line(server, photo_dir, ops_file, tmp_path):
    glob = str(photo_dir / "trip" / "**" / "*.jpg")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RUNPOD_API_KEY": "k"}
    run = subprocess.run([sys.executable, "-m", "gpu_worker.client", "process", glob, "--ops", str(ops_file),
                          "--out", str(tmp_path / "out"), *remote(server), "--json"],
                         capture_output=True, text=True, env=env, timeout=240)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    jpgs = [p for p in (photo_dir / "trip").rglob("*.jpg")]
    assert summary["done"] == summary["listed"] == len(jpgs) > 0
    assert set(summary) >= {"done", "failed", "failed_count", "skipped", "not_attempted", "stopped", "bytes_in",
                            "bytes_out", "wall_s", "images_per_s", "listed", "dest"}
    assert (summary["not_attempted"], summary["stopped"]) == (0, "")
    assert summary["wall_s"] > 0 and summary["images_per_s"] > 0
    # relative paths from the glob's folder part
    assert set(outputs(tmp_path / "out")) == {p.relative_to(photo_dir / "trip").as_posix() for p in jpgs}


def test_ctrl_c_finishes_the_jobs_in_flight_prints_the_summary_and_the_rerun_does_the_rest(server, photo_dir, ops_file,
                                                                                         tmp_path, capsys, api_key):
    """The first Ctrl-C (SIGINT to the command) sends no new job; the jobs in flight finish, are
    written and recorded; the JSON summary still comes, with exit status 130. The same command
    again does only what is left."""
    dest = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RUNPOD_API_KEY": "k"}
    command = [sys.executable, "-m", "gpu_worker.client", "process", str(photo_dir), "--ops", str(ops_file),
               "--out", str(dest), *remote(server), "--batch", "8", "--concurrency", "2", "--json", "--no-progress"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while len(manifest_lines(dest)) < 16:
            assert time.monotonic() < deadline and proc.poll() is None, "the client ended before 16 images were done"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "stopping: no new jobs are sent" in err
    first = json.loads(out)
    assert first["stopped"].startswith("interrupted (Ctrl-C)")
    assert 16 <= first["done"] < 240 and first["failed"] == []
    assert first["not_attempted"] == 240 - first["done"] > 0
    # Every job that was in flight was finished and recorded: nothing half-written.
    assert len(outputs(dest)) == len(manifest_lines(dest)) == first["done"]

    code, second = run_cli(capsys, str(photo_dir), "--ops", str(ops_file), "--out", str(dest), *remote(server))
    assert code == 0, second
    assert (second["done"], second["skipped"], second["not_attempted"]) == (240 - first["done"], first["done"], 0)
    assert set(outputs(dest)) == expected_outputs(photo_dir)


def test_url_list_source(server, tmp_path, capsys, api_key):
    src = tmp_path / "src"
    paths = write_photos(src, 6)
    with LoopbackServer() as web:
        for p in paths:
            web.add_bytes(f"/pics/{p.name}", p.read_bytes(), content_type="image/jpeg")
        urls = tmp_path / "urls.txt"
        urls.write_text("# photos\n\n" + "\n".join(web.url(f"/pics/{p.name}") for p in paths) + "\n")
        code, summary = run_cli(capsys, str(urls), "--ops", json_file(tmp_path, OPS), "--out", str(tmp_path / "out"),
                                *remote(server))
        host = f"127.0.0.1_{web.port}"
    assert code == 0 and summary["done"] == 6
    assert set(outputs(tmp_path / "out")) == {f"{host}/pics/{Path(p.name).with_suffix('.jpg')}" for p in paths}
    assert summary["bytes_in"] == sum(p.stat().st_size for p in paths)  # as the worker reported fetching


def json_file(tmp_path: Path, data) -> str:
    path = tmp_path / "ops.json"
    path.write_text(json.dumps(data))
    return str(path)


# --- S3 source and destination ---------------------------------------------------------------------


@pytest.fixture
def s3(s3_server, dummy_aws):
    """A boto3 client on the moto server, with the dummy identity (conftest's ``dummy_aws``)."""
    return boto3.client("s3", endpoint_url=s3_server)


def keys(s3, bucket: str, prefix: str) -> dict[str, bytes]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"][len(prefix):]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def test_s3_source_and_destination(server, s3, s3_server, photo_dir, ops_file, capsys, api_key):
    s3.create_bucket(Bucket="photos-in")
    s3.create_bucket(Bucket="photos-out")
    sources = sorted(p for p in photo_dir.rglob("*") if p.is_file())[:60]
    for p in sources:
        s3.put_object(Bucket="photos-in", Key=f"shoot/{p.relative_to(photo_dir).as_posix()}", Body=p.read_bytes())
    s3.put_object(Bucket="photos-in", Key="shoot/readme.txt", Body=b"not listed")
    argv = ["s3://photos-in/shoot/", "--ops", str(ops_file), "--out", "s3://photos-out/results", *remote(server),
            "--s3-endpoint-url", s3_server, "--batch", "16", *FAST_RETRY]
    code, summary = run_cli(capsys, *argv)
    assert code == 0 and (summary["done"], summary["listed"]) == (60, 60), summary
    got = keys(s3, "photos-out", "results/")
    results = {k: v for k, v in got.items() if not k.startswith(".")}
    assert set(results) == {p.relative_to(photo_dir).with_suffix(".jpg").as_posix() for p in sources}
    for data in list(results.values())[:5]:
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "JPEG" and im.width == 48
    head = s3.head_object(Bucket="photos-out", Key=f"results/{next(iter(results))}")
    assert head["ContentType"] == "image/jpeg"
    manifest = [k for k in got if k.startswith(".gpu-worker-manifest/")]
    assert len(manifest) == 4 and sum(len(got[k].splitlines()) for k in manifest) == 60  # one object per job

    # The rerun reads them all, sends nothing, and leaves them compacted into one object.
    code, again = run_cli(capsys, *argv)
    assert code == 0 and (again["done"], again["skipped"]) == (0, 60)
    compacted = keys(s3, "photos-out", "results/.gpu-worker-manifest/")
    assert len(compacted) == 1
    records = [json.loads(line) for line in next(iter(compacted.values())).splitlines()]
    assert sorted(r["source"] for r in records) == sorted(p.relative_to(photo_dir).as_posix() for p in sources)
    code, third = run_cli(capsys, *argv)
    assert code == 0 and (third["done"], third["skipped"]) == (0, 60)
    assert keys(s3, "photos-out", "results/.gpu-worker-manifest/") == compacted  # nothing more to compact


def test_s3_manifest_objects_gone_under_a_run_are_skipped_and_new_ones_kept(s3):
    """Another run may compact (delete) objects between this run's listing and its reads, or add
    new ones meanwhile: the ones gone are skipped, and only objects this run read are deleted."""
    s3.create_bucket(Bucket="dest")
    where = parse_s3("s3://dest/out/")
    writer = S3Manifest(s3, where)
    for i in range(3):
        writer.append([manifest_record(f"a{i}.jpg", f"a{i}.jpg", "ops", 1, 1)])
    listed = sorted(keys(s3, "dest", "out/.gpu-worker-manifest/"))
    reader = S3Manifest(s3, where)
    real_read = reader._read

    def read_while_another_run_works(key: str):
        if key.endswith(listed[0]):  # another run compacted this one away and added its own
            s3.delete_object(Bucket="dest", Key=key)
            S3Manifest(s3, where).append([manifest_record("new.jpg", "new.jpg", "ops", 1, 1)])
        return real_read(key)

    reader._read = read_while_another_run_works
    records = reader.load()
    assert sorted(r["source"] for r in records) == ["a1.jpg", "a2.jpg"]
    left = keys(s3, "dest", "out/.gpu-worker-manifest/")
    assert len(left) == 2 and any(b"new.jpg" in body for body in left.values())  # its compaction, and the new one
    assert sorted(r["source"] for r in S3Manifest(s3, where).load()) == ["a1.jpg", "a2.jpg", "new.jpg"]


def test_oversize_files_staged_in_the_bucket_or_reported(server, s3, s3_server, tmp_path, capsys, api_key):
    s3.create_bucket(Bucket="stage")
    src = tmp_path / "src"
    write_photos(src, 6, formats=("JPEG",))
    big = Image.fromarray(np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8))
    big.save(src / "big.png")  # noise: about 77 kB as PNG, over the body limit below
    ops = json_file(tmp_path, OPS)
    limit = ["--max-body-bytes", str(16 * 1024 + 60_000)]

    code, refused = run_cli(capsys, str(src), "--ops", ops, "--out", str(tmp_path / "a"), *remote(server), *limit)
    assert code == 1 and refused["done"] == 6
    assert [f["source"] for f in refused["failed"]] == ["big.png"]
    assert "--stage" in refused["failed"][0]["error"] and "body limit" in refused["failed"][0]["error"]

    code, staged = run_cli(capsys, str(src), "--ops", ops, "--out", str(tmp_path / "b"), *remote(server), *limit,
                           "--stage", "s3://stage/tmp", "--s3-endpoint-url", s3_server)
    assert code == 0 and staged["done"] == 7, staged
    with Image.open(tmp_path / "b" / "big.jpg") as im:
        assert im.size == (48, 48)
    assert any(k.endswith("/big.png") for k in keys(s3, "stage", "tmp/"))


# --- refused before anything is sent -----------------------------------------------------------------


@pytest.mark.parametrize("ops, message", [
    ([{"type": "blur"}], "operations[0]"),
    ({"operations": [], "output": {"format": "TIFF"}}, "unknown output format"),
    ({"operations": [], "images": []}, "unknown field 'images'"),
    ("resize", "must be a list of operations"),
])
def test_bad_ops_are_refused_naming_the_problem(tmp_path, capsys, ops, message):
    write_photos(tmp_path / "src", 2)
    code = cli.main(["process", str(tmp_path / "src"), "--ops", json_file(tmp_path, ops), "--out",
                     str(tmp_path / "out"), "--local"])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not (tmp_path / "out").exists()


def test_bad_arguments_are_refused_before_sending(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    src = tmp_path / "src"
    write_photos(src, 2)
    ops = json_file(tmp_path, OPS)

    def refused(*argv: str) -> str:
        assert cli.main(["process", *argv, "--ops", ops]) == 2
        return capsys.readouterr().err

    out = str(tmp_path / "out")
    assert "--endpoint ID" in refused(str(src), "--out", out)
    assert "RUNPOD_API_KEY" in refused(str(src), "--out", out, "--endpoint", "abc")
    assert "not a folder, a file" in refused(str(tmp_path / "missing"), "--out", out, "--local")
    assert "inside the source folder" in refused(str(src), "--out", str(src / "results"), "--local")
    (src / "img0000.png").write_bytes(b"x")  # beside img0000.jpg: both would become img0000.jpg
    assert "would both be written to 'img0000.jpg'" in refused(str(src), "--out", out, "--local")
    urls = tmp_path / "urls.txt"
    urls.write_text("https://example.com/a.jpg\nftp://example.com/b.jpg\n")
    assert "urls.txt:2" in refused(str(urls), "--out", out, "--local")
    assert "--batch 300" in refused(str(src), "--out", out, "--local", "--batch", "300")


# --- packing ----------------------------------------------------------------------------------------


def test_packing_keeps_jobs_under_the_body_and_batch_limits():
    items = [Item(f"{i}.jpg", "file", f"/x/{i}.jpg", size) for i, size in
             enumerate([3_000_000, 3_000_000, 3_000_000, 100, 100, 9_000_000, 100])]
    items.append(Item("h/u.jpg", "url", "https://h/u.jpg"))
    batches, refused = pack(items, {"operations": []}, batch=3)
    assert [item.relative for item, _ in refused] == ["5.jpg"]  # its base64 alone is over 10 MiB
    for b in batches:
        assert len(b.entries) <= 3 and b.body_bytes <= 10 * 1024 * 1024
    assert [[i.relative for i in b.items] for b in batches] == [["0.jpg", "1.jpg"], ["2.jpg", "3.jpg", "4.jpg"],
                                                                ["6.jpg", "h/u.jpg"]]
    assert sum(b.body_bytes for b in batches) > sum(base64_size(i.size or 0) for i in items if i.relative != "5.jpg")
    # With a staging bucket every job is a full batch: what does not fit inline goes by the bucket.
    staged, none_refused = pack(items, {"operations": []}, batch=3, can_stage=True)
    assert not none_refused
    assert [[(i.relative, how) for i, how in b.entries] for b in staged] == [
        [("0.jpg", "base64"), ("1.jpg", "base64"), ("2.jpg", "stage")],
        [("3.jpg", "base64"), ("4.jpg", "base64"), ("5.jpg", "stage")],
        [("6.jpg", "base64"), ("h/u.jpg", "url")]]
    assert all(b.body_bytes <= 10 * 1024 * 1024 for b in staged)


def test_breaker_trips_on_jobs_failing_the_same_transient_way_in_a_row():
    breaker = Breaker(3)
    assert not breaker.failed("network: ConnectionError", "e1")
    assert not breaker.failed("network: ConnectionError", "e2")
    breaker.answered()  # a job answered in between: the count starts again
    assert not breaker.failed("network: ConnectionError", "e3")
    assert not breaker.failed("HTTP 503", "e4")  # another way: the count starts at one
    assert not breaker.failed("HTTP 503", "e5") and not breaker.tripped
    assert breaker.failed("HTTP 503", "e6") and breaker.tripped
    assert "3 jobs in a row failed the same way (HTTP 503)" in breaker.reason and "e6" in breaker.reason
    assert not breaker.failed("HTTP 503", "e7")  # it trips once
    never = Breaker(0)
    assert not any(never.failed("network: ConnectionError", "e") for _ in range(20)) and not never.tripped


def test_progress_bar_shows_images_per_second_and_eta(tmp_path, capsys):
    src = tmp_path / "src"
    write_photos(src, 3)
    (src / "empty.jpg").write_bytes(b"")  # refused before anything runs: counted, shown as failed
    code = cli.main(["process", str(src), "--ops", json_file(tmp_path, OPS), "--out", str(tmp_path / "out"),
                     "--local", "--progress"])
    err = capsys.readouterr().err
    assert code == 1
    bar = err.replace("\r", "\n").splitlines()
    final = [line for line in bar if line.startswith("images: 100%")]
    assert final, err
    # tqdm: "images: 100%|...| 4/4 [00:01<00:00,  2.9img/s, failed=1]": elapsed<ETA, images/s
    assert re.search(r"\b4/4 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+img/s, failed=1\]", final[-1]), final[-1]
    assert "done 3, failed 1, skipped 0 (already done) of 4 images" in err


def test_listing_a_folder_takes_every_format_the_worker_reads(tmp_path):
    # A real AVIF photo, and one file per extension of the formats table, each written by Pillow's
    # writer for that extension: none of them is skipped.
    im = photo("coffee.png").resize((16, 12))
    im.save(tmp_path / "photo.avif", quality=60, speed=10)
    with Image.open(tmp_path / "photo.avif") as back:
        assert back.format == "AVIF" and back.size == (16, 12)
    for ext in sorted(SOURCE_EXTENSIONS - {".avif"}):
        params = {"speed": 10} if Image.registered_extensions()[ext] == "AVIF" else {}
        im.save(tmp_path / f"photo{ext}", Image.registered_extensions()[ext], **params)
    (tmp_path / "notes.txt").write_text("x")
    assert sorted(i.relative for i in list_items([str(tmp_path)])) == sorted(
        f"photo{ext}" for ext in SOURCE_EXTENSIONS)
    assert {".avif", ".ppm", ".pgm", ".pbm", ".ico", ".mpo"} <= SOURCE_EXTENSIONS


def test_listing_a_folder_skips_hidden_and_non_images(tmp_path):
    write_photos(tmp_path, 3)
    (tmp_path / ".gpu-worker-manifest.jsonl").write_text("")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.jpg").write_bytes(b"x")
    (tmp_path / "a.txt").write_text("x")
    assert [i.relative for i in list_items([str(tmp_path)])] == ["img0000.jpg", "trip/img0001.png",
                                                                "trip/day2/img0002.jpg"]
    with pytest.raises(ClientError, match="same relative path"):
        list_items([str(tmp_path), str(tmp_path)])
