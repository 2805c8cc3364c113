"""The seed README's server, as written there (plus a port argument and a bounded run)."""

import sys
import time

from player import Player

from reverb import ReverbManager, ReverbSide, Server

ReverbManager.REVERB_SIDE = ReverbSide.SERVER

if ReverbManager.REVERB_SIDE == ReverbSide.SERVER:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else float("inf")
    serv = Server(port=port)
    ReverbManager.REVERB_CONNECTION = serv
    serv.start_server()
    print(f"READY {serv.port}", flush=True)

    # Create objects on the server
    player = Player(x=10, y=20)

    # Main loop
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        # Synchronize objects to clients
        ReverbManager.server_sync()
    serv.stop_server()
