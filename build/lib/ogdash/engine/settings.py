"""What defines a set of per-sample gradients besides the model and the data: one frozen value, one cache key."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ogdash.core.errors import OgdashError


@dataclass(frozen=True)
class GradientSettings:
    """Which gradients to extract.

    layer: ``"last"`` (the closed form of the last linear layer, the default), a module or
    parameter name, or ``"all"``. projection_dim: project to this many dimensions (None: keep
    them all). seed: the projection's seed (and the training seed where a model is trained).
    """

    layer: str = "last"
    projection_dim: int | None = None
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.layer, str) or not self.layer:
            raise OgdashError(f"layer must be 'last', 'all' or a module name; got {self.layer!r}.")
        if self.projection_dim is not None and (isinstance(self.projection_dim, bool) or int(self.projection_dim) < 1):
            raise OgdashError(f"projection dimension must be at least 1; got {self.projection_dim}.")

    def to_dict(self) -> dict:
        """A stable, JSON-able form: what cache keys are made from."""
        return asdict(self)
