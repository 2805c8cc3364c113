"""The sans-I/O protocol core: framing, message codec and the session state machine."""

# The message dataclasses first: the codec modules (wirejson, decode, frames, encode) import
# them, and messages.py re-exports the codec at its end, so whichever module is imported first
# the dataclasses are complete before any codec module runs.
from reverb.proto import messages as messages

__all__: list[str] = []
