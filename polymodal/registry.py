"""A registry of implementations keyed by their config class.

Each component kind with a config class per implementation (preprocessor, encoder, fusion,
head, objective, transfer term) has one registry. An implementation registers itself at its
definition site against the pydantic config class that describes it; the config class carries
the user-facing name (``name: Literal["cnn"]``), so every name is written exactly once and no
two tables need to be kept in sync. (Anomaly scorers share one config section and register by
its ``scorer`` choice: :mod:`polymodal.anomaly.scorers`; corruptions and built-in datasets
register by name.)

    @ENCODERS.register(ImageCnnConfig)
    class ImageCnn(nn.Module): ...

    encoder = ENCODERS.build(cfg, spec=...)  # looks up type(cfg), calls ImageCnn.from_config
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps config classes to the classes that implement them."""

    def __init__(self, kind: str):
        self.kind = kind
        self._impls: dict[type, type[T]] = {}

    def register(self, config_cls: type) -> Callable[[type[T]], type[T]]:
        """Class decorator registering ``impl`` for ``config_cls``; returns the class unchanged.

        Raises:
            ValueError: ``config_cls`` already has an implementation.
        """

        def decorator(impl: type[T]) -> type[T]:
            if config_cls in self._impls:
                other = self._impls[config_cls]
                raise ValueError(
                    f"{self.kind} registry: {config_cls.__name__} is already implemented by "
                    f"{other.__module__}.{other.__qualname__}; cannot register {impl.__qualname__}"
                )
            if not hasattr(impl, "from_config"):
                raise TypeError(f"{self.kind} {impl.__qualname__} must define a from_config classmethod")
            self._impls[config_cls] = impl
            return impl

        return decorator

    def get(self, config_cls: type) -> type[T]:
        """The implementation registered for ``config_cls``."""
        try:
            return self._impls[config_cls]
        except KeyError:
            known = ", ".join(sorted(c.__name__ for c in self._impls))
            raise KeyError(
                f"No {self.kind} is registered for config {config_cls.__name__}; registered: {known}"
            ) from None

    def build(self, cfg: Any, **context: Any) -> T:
        """Build the implementation of ``cfg`` through its ``from_config(cfg, **context)``."""
        return self.get(type(cfg)).from_config(cfg, **context)

    def items(self) -> Iterator[tuple[type, type[T]]]:
        """(config class, implementation) pairs, in registration order."""
        return iter(list(self._impls.items()))

    def __contains__(self, config_cls: type) -> bool:
        return config_cls in self._impls

    def __len__(self) -> int:
        return len(self._impls)
