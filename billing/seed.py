"""The seed model/pricing table of SPEC §5, loaded by a data migration.

Capabilities follow Anthropic's model pages as of 2026 (see docs/wire-format.md
§10): 4.6+ models reject a prefill; Opus 4.7 rejects non-default sampling; models from
Sonnet 4.5 on reject temperature together with top_p and have native structured output.
Thinking: Opus 4.7 takes only adaptive thinking (``enabled`` + ``budget_tokens`` is a 400);
the 4.6 models take both, with budgets deprecated, so they get adaptive too; the 4.5 and 4
models take only ``enabled`` + ``budget_tokens``; the 3.5 models have no extended thinking.
"""
from datetime import UTC, date, datetime
from decimal import Decimal

from django.core.management.color import no_style
from django.db import connection

SEED_PRICES_EFFECTIVE = datetime(2024, 1, 1, tzinfo=UTC)

# public id, tier, upstream id, input $/MTok, output $/MTok, context, max output,
# accepts_sampling, temperature+top_p, structured output, prefill, thinking mode,
# lifecycle, retired_on, successor
SEED_MODELS = [
    ("claude-opus-4-7", "Opus 4.7", "claude-opus-4-7", "5.00", "25.00", 1_000_000, 128_000,
     False, False, True, False, "adaptive", "active", None, None),
    ("claude-opus-4-6", "Opus 4.6", "claude-opus-4-6", "5.00", "25.00", 1_000_000, 128_000,
     True, False, True, False, "adaptive", "active", None, None),
    ("claude-sonnet-4-6", "Sonnet 4.6", "claude-sonnet-4-6", "3.00", "15.00", 1_000_000, 128_000,
     True, False, True, False, "adaptive", "active", None, None),
    ("claude-haiku-4-5", "Haiku 4.5", "claude-haiku-4-5", "1.00", "5.00", 200_000, 64_000,
     True, False, False, True, "enabled", "active", None, None),
    ("claude-sonnet-4-5", "Sonnet 4.5", "claude-sonnet-4-5", "3.00", "15.00", 200_000, 64_000,
     True, False, True, True, "enabled", "deprecated", date(2026, 11, 30), "claude-sonnet-4-6"),
    ("claude-opus-4-5", "Opus 4.5", "claude-opus-4-5", "5.00", "25.00", 200_000, 64_000,
     True, False, True, True, "enabled", "active", None, None),
    ("claude-4-sonnet", "Sonnet 4", "claude-sonnet-4-20250514", "3.00", "15.00", 200_000, 64_000,
     True, True, False, True, "enabled", "retired", date(2026, 6, 15), "claude-sonnet-4-6"),
    ("claude-4-opus", "Opus 4", "claude-opus-4-20250514", "15.00", "75.00", 200_000, 32_000,
     True, True, False, True, "enabled", "retired", date(2026, 6, 15), "claude-opus-4-7"),
    ("claude-3-5-sonnet-latest", "3.5 Sonnet", "claude-3-5-sonnet-20241022", "3.00", "15.00", 200_000, 8_192,
     True, True, False, True, "none", "retired", date(2025, 10, 22), "claude-sonnet-4-6"),
    ("claude-3-5-haiku-latest", "3.5 Haiku", "claude-3-5-haiku-20241022", "0.80", "4.00", 200_000, 8_192,
     True, True, False, True, "none", "retired", date(2026, 2, 19), "claude-haiku-4-5"),
]

RECOMMENDED = "claude-sonnet-4-6"


def load_seed(Model, Price) -> None:
    """Idempotent: creates missing rows, leaves operator edits alone.

    Seed rows get fixed primary keys (their position + 1), so every database, and a test
    database flushed and re-seeded, agrees on them."""
    rows = {}
    for position, row in enumerate(SEED_MODELS):
        (public_id, tier, upstream, price_in, price_out, context, max_out, sampling, temp_top_p,
         structured, prefill, thinking_mode, lifecycle, retired_on, _successor) = row
        model, created = Model.objects.get_or_create(
            public_id=public_id,
            defaults=dict(
                id=position + 1, aliases=[f"anthropic/{public_id}"], upstream_id=upstream, tier=tier,
                context_window=context, max_output_tokens=max_out, accepts_sampling=sampling,
                accepts_temperature_with_top_p=temp_top_p, structured_output=structured,
                prefill=prefill, lifecycle=lifecycle, retired_on=retired_on,
                recommended=public_id == RECOMMENDED, position=position, **_thinking_field(Model, thinking_mode),
            ),
        )
        rows[public_id] = model
        if created:
            Price.objects.create(
                id=position + 1, model=model, effective_from=SEED_PRICES_EFFECTIVE,
                input_per_mtok=Decimal(price_in), output_per_mtok=Decimal(price_out),
            )
    _reset_sequences(Model, Price)
    for row in SEED_MODELS:
        successor = row[-1]
        model = rows[row[0]]
        if successor and model.successor_id is None:
            model.successor = rows[successor]
            model.save(update_fields=["successor"])


def _thinking_field(Model, mode: str) -> dict:
    """The thinking capability in the form the (possibly historical) model has: migration
    0003 seeds the table while it still had a ``thinking`` flag (0007 turns it into a mode)."""
    if any(field.name == "thinking_mode" for field in Model._meta.get_fields()):
        return {"thinking_mode": mode}
    return {"thinking": mode != "none"}


def seed_thinking_modes() -> dict[str, str]:
    """public id → the thinking mode the seed gives it."""
    return {row[0]: row[11] for row in SEED_MODELS}


def _reset_sequences(*models) -> None:
    """Explicit ids do not advance PostgreSQL sequences; move them past the seed rows."""
    statements = connection.ops.sequence_reset_sql(no_style(), list(models))
    if statements:
        with connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)
