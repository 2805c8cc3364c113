"""The seed README's ReverbObject."""

from reverb import ReverbManager, ReverbObject


@ReverbManager.reverb_object_attribute
class Player(ReverbObject):
    def __init__(self, x=0, y=0, uid=None, add_on_init=True, belonging_membership=None):
        self.x = x
        self.y = y
        super().__init__(
            x, y, uid=uid, add_on_init=add_on_init, belonging_membership=belonging_membership
        )

    # Optional: called on client when object is created locally
    def on_init_from_client(self):
        pass

    # Optional: called on server when object is created
    def on_init_from_server(self):
        pass
