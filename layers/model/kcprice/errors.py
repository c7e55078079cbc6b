"""The few named failures the handlers map to HTTP or to a report, once."""


class KcPriceError(Exception):
    """Base class: every expected failure of the domain code."""


class NoModelError(KcPriceError):
    """No champion has been promoted yet (HTTP 503)."""


class ArtifactIntegrityError(KcPriceError):
    """An artifact's bytes do not match the sha256 the registry recorded for them."""


class IncompatibleArtifactError(KcPriceError, ValueError):
    """An artifact built for another feature set than this code computes (a model from before a feature change)."""


class ChampionChangedError(KcPriceError):
    """The champion pointer moved while a challenger was being trained (conditional write lost)."""


class StoreUnavailableError(KcPriceError):
    """S3 or DynamoDB did not answer (throttled, 5xx, network) and nothing cached can stand in (HTTP 503)."""


class NotFoundError(KcPriceError):
    """A requested item (house id, object) does not exist (HTTP 404)."""
