"""The sans-I/O protocol core: framing, message codec and the session state machine."""

__all__: list[str] = []
