"""The seed README's client, as written there (plus port and a bounded run)."""

import sys
import time

from player import Player

from reverb import Client, ReverbManager, ReverbSide

ReverbManager.REVERB_SIDE = ReverbSide.CLIENT

if ReverbManager.REVERB_SIDE == ReverbSide.CLIENT:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else float("inf")
    clt = Client(ip="127.0.0.1", port=port)
    ReverbManager.REVERB_CONNECTION = clt
    clt.connect()

    # Main loop
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        # Access synchronized objects
        for p in ReverbManager.get_all_ro_by_type(Player):
            print(p.x, p.y)
        time.sleep(0.1)  # the seed loops flat out; a tenth of a second keeps the output readable
    clt.disconnect()
