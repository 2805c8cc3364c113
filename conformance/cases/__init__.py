"""Case modules, one per group; importing this package registers every case."""

from conformance.cases import (  # noqa: F401
    clarify,
    closing,
    columns,
    compact,
    concurrency,
    deflate,
    encoding,
    framing,
    handshake,
    interest,
    limits,
    messages,
    ownership,
    quiet,
    resume,
    rooms,
    rpc,
    sync,
    timefeature,
    uids,
)
