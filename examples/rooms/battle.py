"""The match room of the rooms example (guide "Rooms and a lobby"): shared by server and
clients, as every replicated type is."""

from typing import Any

from reverb import ReverbObject, expose
from reverb.rooms import Accept, Reject, Room


class Ship(ReverbObject):
    def __init__(self, x=0, shots=0, uid=None, add_on_init=True, belonging_membership=None):
        self.x = x
        self.shots = shots
        super().__init__(
            x, shots, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    @expose
    def fire(self) -> int:
        self.shots += 1
        return self.shots


class Battle(Room):
    object_types = (Ship,)
    tick_rate = 20.0  # this room type's own rate
    max_clients = 2
    filter_by = ("mode",)  # quick play only matches rooms of the same mode

    def on_create(self, options: dict[str, Any]) -> None:
        self.set_metadata(map=options.get("map", "dust"))

    def on_auth(self, client, options: dict[str, Any]) -> Accept | Reject:
        if options.get("name", "").strip() == "":
            return Reject("pick a name first")
        return Accept(auth=options["name"])

    def on_join(self, client) -> None:
        self.spawn(Ship, 100 * len(self.clients), owner=client.member)
        if self.full:
            self.lock()  # the match starts: nobody else gets in
            self.set_metadata(state="playing")

    def on_leave(self, client, consented: bool) -> None:
        for ship in list(self.objects.values()):
            if ship.belonging_membership == client.member:
                self.despawn(ship)

    def on_tick(self, now: float) -> None:
        if sum(ship.shots for ship in self.objects.values()) >= 6:
            self.dispose()  # the match is over: everyone gets room_left "room disposed"
