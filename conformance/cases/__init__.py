"""Case modules, one per group; importing this package registers every case."""

from conformance.cases import (  # noqa: F401
    clarify,
    closing,
    compact,
    concurrency,
    encoding,
    framing,
    handshake,
    limits,
    ownership,
    rpc,
    sync,
    timefeature,
    uids,
)
