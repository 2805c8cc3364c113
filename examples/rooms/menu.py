"""The rooms example's player: a menu that watches the live battles, quick-plays one, fires
until the match ends, and prints what it saw as JSON. ``python menu.py PORT NAME``."""

import json
import sys
import time

from battle import Ship

from reverb import Client, ReverbContext, RoomRefused, RpcError

port, name = int(sys.argv[1]), sys.argv[2]
ctx = ReverbContext()
ctx.register(Ship)
clt = Client(port=port, rooms=True, context=ctx)
clt.connect()

seen = []
ctx.client_events.on_event("room_event")(lambda kind, listing: seen.append(kind))

lobby = clt.watch("battle")  # the menu's live list of battles
print(json.dumps({"lobby": sorted(lobby.rooms)}), flush=True)

try:
    clt.join_or_create("battle", {"mode": "duel"})  # no name: refused by on_auth
except RoomRefused as refused:
    print(json.dumps({"refused": refused.code, "reason": refused.reason}), flush=True)

room = clt.join_or_create("battle", {"mode": "duel", "name": name})  # "Quick play"
deadline = time.monotonic() + 20
while time.monotonic() < deadline and len(room.get_all_ro_by_type(Ship)) < 2:
    ctx.client_sync(timeout=0.05)  # wait for the opponent
ships = room.get_all_ro_by_type(Ship)
mine = next(s for s in ships if s.is_owner())

ended = []
ctx.client_events.on_event("room_left")(lambda room_id, consented, why: ended.append(why))
while time.monotonic() < deadline and not ended:
    try:
        mine.compute_server(mine.fire).result(5)
    except RpcError:  # unknown_object: the match ended (room disposed) while the shot flew
        pass
    ctx.client_sync(timeout=0.05)

print(
    json.dumps(
        {
            "room": room.room_id,
            "ships": len(ships),
            "ended": ended,
            "left_with": len(ctx.objects),
            "lobby_events": sorted(set(seen)),
        }
    ),
    flush=True,
)
clt.disconnect()
