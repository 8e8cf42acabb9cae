"""``python -m gpu_worker.client process SOURCE... --ops ops.json --out DEST`` (also installed as
``gpu-worker-client``).

Exit status: 0 when every image was done (or already was), 1 when some failed (the summary lists
them), 2 for bad arguments or sources (nothing was sent), 3 when the run stopped because the
endpoint looked down (``--give-up-after`` jobs in a row failed the same transient way; the images
not sent are counted as not attempted), 130 after Ctrl-C. The first Ctrl-C stops sending jobs,
lets the jobs in flight finish and prints the summary; a second one quits at once. After 1, 3 and
130 what was written is recorded: running the same command again does only the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence

from gpu_worker.client.breaker import DEFAULT_THRESHOLD
from gpu_worker.client.run import DEFAULT_BATCH, DEFAULT_CONCURRENCY, INTERRUPTED, Options, process
from gpu_worker.client.s3 import ClientError
from gpu_worker.client.spec import load_spec
from gpu_worker.client.submit import RetryPolicy
from gpu_worker.server.config import RUN_BODY_LIMIT

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENDPOINT_DOWN, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="gpu-worker-client", description="Process many images through the worker.")
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser("process", help="process SOURCE... into DEST",
                       description="Process images from folders, globs, URL lists or s3:// prefixes into a "
                                   "folder or s3:// prefix. Running the same command again does only what is left.")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="a folder, a glob (quote it), an image file, a text file of URLs, or s3://bucket/prefix")
    p.add_argument("--ops", required=True, metavar="OPS_JSON",
                   help="a JSON file: a list of operations, or {operations, output, analysis}")
    p.add_argument("--out", required=True, metavar="DEST", help="a folder or s3://bucket/prefix")
    where = p.add_argument_group("where jobs run (one of --endpoint, --local)")
    where.add_argument("--endpoint", metavar="ID", help="a RunPod endpoint id; the key is RUNPOD_API_KEY")
    where.add_argument("--base-url", metavar="URL",
                       help="a server speaking RunPod's API, as runpod.endpoint_url_base takes it "
                            "(http://127.0.0.1:8000/v2 for `make serve`, with any --endpoint)")
    where.add_argument("--local", action="store_true", help="run the worker's handler in this process")
    tune = p.add_argument_group("jobs")
    tune.add_argument("--batch", type=int, default=DEFAULT_BATCH,
                      help=f"images per job, the worker's batch (default {DEFAULT_BATCH}: four of its 16-image chunks "
                           "to overlap; fewer where files would pass the body limit and --stage is not given)")
    tune.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                      help=f"jobs in flight at once (default {DEFAULT_CONCURRENCY})")
    tune.add_argument("--retries", type=int, default=5, help="further tries of a job after a transient failure (default 5)")
    tune.add_argument("--backoff", type=float, default=1.0, metavar="SECONDS",
                      help="pause before the first retry, doubled each time (default 1)")
    tune.add_argument("--give-up-after", type=int, default=DEFAULT_THRESHOLD, metavar="JOBS",
                      help="stop sending jobs when this many in a row have failed the same transient way "
                           "(connection refused, 503, ...) after their retries, with none answered in between: "
                           f"the endpoint looks down; 0: never stop (default {DEFAULT_THRESHOLD})")
    tune.add_argument("--job-timeout", type=float, default=900.0, metavar="SECONDS",
                      help="a job not ended after this long is cancelled and tried again (default 900)")
    tune.add_argument("--max-body-bytes", type=int, default=RUN_BODY_LIMIT,
                      help=f"the run request's body limit (default RunPod's, {RUN_BODY_LIMIT:,})")
    s3 = p.add_argument_group("S3")
    s3.add_argument("--s3-endpoint-url", metavar="URL",
                    help="an S3-compatible service (else AWS_ENDPOINT_URL, else AWS)")
    s3.add_argument("--stage", metavar="S3_PREFIX",
                    help="s3:// prefix the worker can read: files too large to send inline go there and "
                         "travel as presigned URLs")
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    bar = out.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="show the progress bar (default: on a terminal)")
    bar.add_argument("--no-progress", dest="progress", action="store_false")
    return top


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        options = Options(
            sources=list(args.sources), spec=load_spec(args.ops), dest=args.out, endpoint=args.endpoint,
            api_key=os.environ.get("RUNPOD_API_KEY"), base_url=args.base_url, local=args.local,
            batch=args.batch, concurrency=args.concurrency,
            retry=RetryPolicy(retries=max(0, args.retries), backoff_s=max(0.0, args.backoff)),
            job_timeout_s=args.job_timeout, s3_endpoint_url=args.s3_endpoint_url, stage=args.stage,
            max_body=args.max_body_bytes, progress=args.progress, give_up_after=max(0, args.give_up_after))
        if args.base_url and not args.endpoint:
            raise ClientError("--base-url needs --endpoint ID (any id for a local server)")
        with _first_ctrl_c_sets() as interrupt:
            summary = process(options, interrupt)
    except ClientError as exc:
        print(f"gpu-worker-client: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("gpu-worker-client: interrupted; what was written is recorded, run the same command again "
              "for the rest", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        print(summary.text(), file=sys.stderr)
    if summary.stopped == INTERRUPTED:
        return EXIT_INTERRUPTED
    if summary.stopped:
        return EXIT_ENDPOINT_DOWN
    return EXIT_FAILED if summary.failed else EXIT_OK


@contextmanager
def _first_ctrl_c_sets() -> Iterator[threading.Event]:
    """An event the first Ctrl-C (SIGINT) sets, saying so on stderr; the second raises
    KeyboardInterrupt. Outside the main thread (no signal handlers there) Ctrl-C stays Python's."""
    interrupt = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupt
        return

    def on_sigint(signum, frame) -> None:
        if interrupt.is_set():
            raise KeyboardInterrupt
        interrupt.set()
        print("gpu-worker-client: stopping: no new jobs are sent; the jobs in flight finish and are written "
              "(Ctrl-C again to quit at once)", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield interrupt
    finally:
        signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
