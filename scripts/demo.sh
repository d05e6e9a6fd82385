#!/usr/bin/env bash
# Set up, then start the service on Milvus Lite, ingest the sample corpus, run searches.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/hsearch demo "$@"
