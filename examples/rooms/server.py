"""The rooms example's server: ``python server.py [PORT]`` prints ``READY <port>``, serves
until its standard input closes."""

import sys
import threading

from battle import Battle

from reverb import ReverbManager, ReverbSide, Server

ReverbManager.REVERB_SIDE = ReverbSide.SERVER
ReverbManager.define_room("battle", Battle)

serv = Server(port=int(sys.argv[1]) if len(sys.argv) > 1 else 8080)
serv.start_server()
print(f"READY {serv.port}", flush=True)

done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
while not done.is_set():
    ReverbManager.server_sync()  # the default room's tick; the battles tick in between
serv.stop_server()
