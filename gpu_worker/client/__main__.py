"""``python -m gpu_worker.client``: the bulk client's command line (:mod:`gpu_worker.client.cli`)."""

import sys

from gpu_worker.client.cli import main

sys.exit(main())
