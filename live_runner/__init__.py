"""The real-time trading chain (see README.md). Runs standalone; never imports dagster."""

import os as _os

# Arrow's default allocator (mimalloc) keeps the pages of the bar chunks a long replay reads and
# frees, so peak memory grew with the number of sessions (500 symbols: 183 -> 217 MB over 1 -> 4
# sessions); jemalloc returns them (166 -> 177 MB). Set before pyarrow is first imported; an
# explicit ARROW_DEFAULT_MEMORY_POOL in the environment wins.
_os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
