"""Run ``img2dataset.download`` in a process of its own: ``python -m gill_eval.datasets.img2dataset_run ARGS``.

Why a separate process: img2dataset's multiprocessing pool uses 'spawn', whose children re-import the
parent's main module; under the ``gill-eval`` console script that is the whole CLI (torch, diffusers,
...), tens of seconds per child. This module is the child's main instead and imports only img2dataset.
It also keeps img2dataset's process-wide changes (its SIGINT handler calls ``sys.exit(0)``) out of the
caller. ARGS is a JSON object of keyword arguments for ``img2dataset.download``.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> None:
    kwargs = json.loads(argv[1])
    import img2dataset

    img2dataset.download(**kwargs)


if __name__ == "__main__":
    main(sys.argv)
