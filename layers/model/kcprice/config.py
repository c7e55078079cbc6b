"""Per-function settings, read from the environment once at cold start (never at import of shared modules)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Base(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)
    bucket: str = Field(validation_alias="BUCKET_NAME", min_length=3)


class PredictSettings(_Base):
    table: str = Field(validation_alias="TABLE_NAME")
    # Bounded staleness: a newly promoted champion is served at most this long after promotion.
    model_ttl_seconds: float = Field(60.0, validation_alias="MODEL_TTL_SECONDS", ge=0)
    # GET /model shows lineage (upload keys, who promoted) only when the stack says so (ExposeLineage).
    expose_lineage: bool = Field(False, validation_alias="EXPOSE_LINEAGE")


class PrecomputeSettings(_Base):
    table: str = Field(validation_alias="TABLE_NAME")
    inventory_key: str = Field("inventory/houses.csv", validation_alias="INVENTORY_KEY")
    prediction_ttl_days: int = Field(30, validation_alias="PREDICTION_TTL_DAYS", ge=1)
    psi_threshold: float = Field(0.2, validation_alias="PSI_THRESHOLD", gt=0)


class RetrainSettings(_Base):
    min_upload_rows: int = Field(50, validation_alias="MIN_UPLOAD_ROWS", ge=1)
    min_training_rows: int = Field(1000, validation_alias="MIN_TRAINING_ROWS", ge=100)
    # A challenger must beat the champion's holdout MAPE by at least this many points to be promoted.
    min_improvement: float = Field(0.0, validation_alias="MIN_MAPE_IMPROVEMENT", ge=0)
    # Powertools Idempotency: one record per uploaded object version. An unfinished run's record expires at its
    # invocation's deadline (the Lambda context's remaining time); a finished one is remembered this long.
    idempotency_table: str = Field(validation_alias="IDEMPOTENCY_TABLE", min_length=3)
    idempotency_days: int = Field(7, validation_alias="IDEMPOTENCY_DAYS", ge=1)
    psi_threshold: float = Field(0.2, validation_alias="PSI_THRESHOLD", gt=0)
    # An upload whose prices are further from the champion's than this (median error, as a multiple of the
    # champion's holdout median error, and at least the floor) is quarantined, not trained on.
    plausibility_factor: float = Field(3.0, validation_alias="PLAUSIBILITY_FACTOR", gt=1)
    plausibility_floor: float = Field(0.25, validation_alias="PLAUSIBILITY_FLOOR", gt=0)


class IngestSettings(_Base):
    state_table: str = Field(validation_alias="STATE_TABLE", min_length=3)
    secret_arn: str = Field("", validation_alias="MARKETPLACE_SECRET_ARN")  # empty: not configured
    sslmode: Literal["require", "disable"] = Field("require", validation_alias="MARKETPLACE_SSLMODE")
    schema_text: str = Field("{}", validation_alias="MARKETPLACE_SCHEMA")
    # Retraining rejects smaller files: the window grows until it holds this many good sales.
    min_rows: int = Field(50, validation_alias="MIN_UPLOAD_ROWS", ge=1)
    lag_seconds: float = Field(60.0, validation_alias="INGEST_LAG_SECONDS", ge=0)
    # At most this many sale versions per export: a first export of a long history goes in parts.
    max_rows: int = Field(100_000, validation_alias="INGEST_MAX_ROWS", ge=1)

    def marketplace_schema(self):
        """kcprice.marketplace.Schema from MARKETPLACE_SCHEMA (a bad name fails the cold start, naming it)."""
        import json

        from kcprice.marketplace import Schema

        return Schema(**json.loads(self.schema_text))
