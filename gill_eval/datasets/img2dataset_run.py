"""Run ``img2dataset.download`` in a process of its own: ``python -m gill_eval.datasets.img2dataset_run ARGS``.

Why a separate process: img2dataset's multiprocessing pool uses 'spawn', whose children re-import the
parent's main module; under the ``gill-eval`` console script that is the whole CLI (torch, diffusers,
...), tens of seconds per child. This module is the child's main instead and imports only img2dataset.
It also keeps img2dataset's process-wide changes (its SIGINT handler calls ``sys.exit(0)``) out of the
caller. ARGS is a JSON object of keyword arguments for ``img2dataset.download``; with the pyspark
distributor a second argument, the Spark master URL, follows (``python -m ... ARGS MASTER``).

Reliability (docs/reliability.md): the parent starts this process as the leader of its own process
group; a watchdog thread kills that group (img2dataset's pool workers included) as soon as the parent
is gone, so a ``kill -9`` of ``gill-eval prepare`` leaves no downloader racing the rerun, and the rerun's
downloader waits for the output folder's lock until the old group has ended. Image downloads get an
overall deadline of ``timeout`` seconds (img2dataset's own is per socket read only, so a server that
trickles bytes would hold a thread forever); the patch is applied in this process and in the spawned
pool workers (which import this module as ``__mp_main__``). Where the parent names a ticks file
(``GILL_EVAL_ROW_TICKS``, multiprocessing only), each finished row appends a byte to it: the parent's progress
bar counts them. Where the parent names a Pillow store mode (``GILL_EVAL_STORE``), the workers store each image
as that mode does (``_storing_resizer``; benchmarks/results/README.md, prepare cc3m).
"""

from __future__ import annotations

import importlib
import io
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

WATCH_INTERVAL_S = 0.2
PARENT_ENV = "GILL_EVAL_PARENT_PID"  # set by download.run_in_own_group
ROW_TICKS_ENV = "GILL_EVAL_ROW_TICKS"  # a file to append one byte to per finished row (the parent's progress bar)
STORE_ENV = "GILL_EVAL_STORE"  # "MODE:SIZE": the workers store what image_store's MODE stores (see _storing_resizer)
CHUNK = 1 << 16
_ticks: list[int] = []  # the ticks file's descriptor, opened once per process


def _read_before(response: Any, deadline: float, timeout: float) -> bytes:
    chunks = []
    while block := response.read1(CHUNK):
        chunks.append(block)
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out: the whole transfer took more than {timeout:g} s")
    data = b"".join(chunks)
    announced = response.headers.get("Content-Length")
    if announced is not None and announced.isdigit() and len(data) != int(announced):
        raise OSError(f"incomplete read: {len(data)} of the {announced} bytes announced")
    return data


def download_image(row: Any, timeout: float, user_agent_token: Any, disallowed_header_directives: Any) -> Any:
    """img2dataset's ``download_image`` with the whole transfer, not just each read, bounded by ``timeout``."""
    key, url = row
    deadline = time.monotonic() + timeout
    agent = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:72.0) Gecko/20100101 Firefox/72.0"
    if user_agent_token:
        agent += f" (compatible; {user_agent_token}; +https://github.com/rom1504/img2dataset)"
    try:
        request = urllib.request.Request(url, data=None, headers={"User-Agent": agent})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            from img2dataset.downloader import is_disallowed

            if disallowed_header_directives and is_disallowed(
                    response.headers, user_agent_token, disallowed_header_directives):
                return key, None, "Use of image disallowed by X-Robots-Tag directive"
            return key, io.BytesIO(_read_before(response, deadline, timeout)), None
    except Exception as err:  # noqa: BLE001 - img2dataset records the message as the row's error
        return key, None, str(err)


def _counting(download_with_retry: Callable[..., Any]) -> Callable[..., Any]:
    """img2dataset's per-row ``download_image_with_retry``, appending one byte to the ticks file per row (an
    ``O_APPEND`` write of one byte is atomic, so the pool's threads and processes can share the file)."""
    def counted(*args: Any, **kwargs: Any) -> Any:
        result = download_with_retry(*args, **kwargs)
        if _ticks:
            os.write(_ticks[0], b".")
        return result

    counted.counts_rows = True  # type: ignore[attr-defined]
    return counted


def _storing_resizer(store: str) -> Callable[..., Any]:
    """img2dataset's ``Resizer.__call__`` replaced by ``image_store.store_one`` (``store`` is "MODE:SIZE"): the
    protocol's crop, resize and PNG encode then run in img2dataset's download workers, in parallel and while
    other rows download, as its own resize does, instead of in gill-eval's process afterwards. Failures carry
    the messages ``download.classify`` maps to ``decode_error`` and ``too_many_pixels``."""
    from gill_eval.datasets.image_store import store_one, stored_size

    mode, size = store.rsplit(":", 1)

    def call(self: Any, img_stream: Any, blurring_bbox_list: Any = None) -> tuple[Any, ...]:
        image, status, message, original = store_one(img_stream.read(), mode, int(size))
        if image is None or original is None:
            prefix = "image area too large" if status == "too_many_pixels" else "image decoding error"
            return None, None, None, None, None, f"{prefix}: {message}"
        side = stored_size(mode, int(size))
        return image, side, side, original[0], original[1], None

    call.stores = store  # type: ignore[attr-defined]
    return call


def _patch_downloader() -> None:
    import img2dataset.downloader

    img2dataset.downloader.download_image = download_image
    store = os.environ.get(STORE_ENV)
    if store:
        import img2dataset.resizer

        if getattr(img2dataset.resizer.Resizer.__call__, "stores", None) != store:
            img2dataset.resizer.Resizer.__call__ = _storing_resizer(store)
    ticks = os.environ.get(ROW_TICKS_ENV)
    if ticks and not _ticks:
        _ticks.append(os.open(ticks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
    if not getattr(img2dataset.downloader.download_image_with_retry, "counts_rows", False):
        img2dataset.downloader.download_image_with_retry = _counting(img2dataset.downloader.download_image_with_retry)


class _DeadlineDownloader:
    """img2dataset's downloader as a Spark task runs it: the Python workers of Spark's executors unpickle it
    without ever running this module, so the deadline patch is applied there, on the first call."""

    def __init__(self, downloader: Any) -> None:
        self.downloader = downloader

    def __call__(self, row: Any) -> Any:
        _patch_downloader()
        return self.downloader(row)


def _pyspark_distributor(processes_count: int, downloader: Any, reader: Any, subjob_size: int,
                         max_shard_retry: int) -> None:
    from img2dataset.distributor import pyspark_distributor

    pyspark_distributor(processes_count, _DeadlineDownloader(downloader), reader, subjob_size, max_shard_retry)


def _start_spark(master: str) -> Any:
    """The session img2dataset's pyspark distributor uses (it makes a local one only when none is active).

    Executors run Python tasks with ``PYSPARK_PYTHON``, by default this interpreter: on a cluster the
    same environment must exist at the same path on every node, or ``PYSPARK_PYTHON`` must name it.
    Other settings (memory, cores, JVM options) come from Spark's own ``$SPARK_CONF_DIR/spark-defaults.conf``.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    importlib.import_module("img2dataset.main").pyspark_distributor = _pyspark_distributor
    return SparkSession.builder.master(master).appName("gill-eval img2dataset").getOrCreate()


def _watch_parent(parent: int) -> None:
    """End this process group when the parent that started it is gone (it was killed with -9)."""
    while os.getppid() == parent:
        time.sleep(WATCH_INTERVAL_S)
    os.killpg(os.getpgrp(), signal.SIGKILL)


def start_watchdog() -> None:
    """Watch the parent named by ``GILL_EVAL_PARENT_PID`` (before any slow import: the parent may already be gone)."""
    parent = os.environ.get(PARENT_ENV)
    if parent and os.getpgrp() == os.getpid():  # the leader of the group run_in_own_group made
        threading.Thread(target=_watch_parent, args=(int(parent),), daemon=True).start()


def main(argv: list[str]) -> None:
    kwargs = json.loads(argv[1])
    import filelock
    import img2dataset

    _patch_downloader()
    output = Path(kwargs["output_folder"])
    output.parent.mkdir(parents=True, exist_ok=True)
    # a downloader of a killed run may still be ending: wait for it rather than race it for the shards
    with filelock.FileLock(str(output.parent / f".{output.name}.lock"), timeout=120, thread_local=False):
        spark = _start_spark(argv[2]) if kwargs["distributor"] == "pyspark" else None
        try:
            img2dataset.download(**kwargs)
        finally:
            if spark is not None:
                spark.stop()


if __name__ == "__main__":
    start_watchdog()
    main(sys.argv)
elif __name__ == "__mp_main__":  # an img2dataset pool worker
    _patch_downloader()
