"""Case modules, one per group; importing this package registers every case."""

from conformance.cases import (  # noqa: F401
    closing,
    concurrency,
    encoding,
    framing,
    handshake,
    ownership,
    rpc,
    sync,
    uids,
)
