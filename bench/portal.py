"""Portal at scale: 1,000,000 request records (+ their charges) in a dedicated PostgreSQL
database, roll-ups built, then the dashboard, request log and monthly reports timed
through Django's test Client as a logged-in owner.

    .venv/bin/python -m bench.portal [--records 1000000] [--db postgres://postgres@127.0.0.1:5432/tokenhub_portal_bench]

Rows are generated inside PostgreSQL (INSERT … SELECT generate_series), charges priced in
SQL with the same formula as billing.pricing (checked against compute_cost on a sample).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from urllib.parse import urlparse

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/tokenhub_portal_bench"


def ensure_database(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def timed(fn, repeat: int = 5):
    times = []
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return result, statistics.median(times), min(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--db", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--days", type=int, default=30, help="spread the records over this many days up to now")
    parser.add_argument("--keep", action="store_true", help="reuse existing generated rows if the count matches")
    args = parser.parse_args()

    ensure_database(args.db)
    os.environ["DATABASE_URL"] = args.db
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ.setdefault("REDIS_URL", "")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from billing.models import Charge, Model, RequestRecord, UsageRollup
    from billing.months import current_month, shift_month
    from billing.pricing import compute_cost
    from billing.reports import generate_statement
    from billing.rollups import rebuild, roll_up
    from tokenhub_portal.accounts.models import ApiKey, Membership, Team
    from tokenhub_portal.web.services import issue_key

    assert connection.vendor == "postgresql", "the benchmark needs PostgreSQL"
    setup_test_environment()  # the test Client needs it (and 'testserver' in ALLOWED_HOSTS)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("migrate", verbosity=0)

    team, _ = Team.objects.get_or_create(name="bench", defaults={"monthly_budget": 100000})
    other, _ = Team.objects.get_or_create(name="bench-other")
    user = get_user_model().objects.filter(username="bench-owner").first() or \
        get_user_model().objects.create_user("bench-owner", "bench@example.com", "bench-password-1")
    Membership.objects.get_or_create(team=team, user=user, defaults={"role": "owner"})

    existing = RequestRecord.objects.count()
    if not (args.keep and existing == args.records):
        print(f"generating {args.records:,} records + charges over {args.days} days …", flush=True)
        t0 = time.perf_counter()
        with connection.cursor() as cur:
            cur.execute("TRUNCATE billing_usagerollup, billing_monthlystatement, billing_rollupstate, "
                        "billing_charge, proxy_requestrecord")
        ApiKey.objects.filter(team__in=[team, other]).delete()
        keys = [issue_key(team, name=f"key-{i:02d}").api_key.id for i in range(20)]
        keys += [issue_key(other, name=f"other-{i}").api_key.id for i in range(2)]
        models = list(Model.objects.filter(public_id__in=[
            "claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-7", "claude-sonnet-4-5"]).values_list("id", flat=True))
        span = args.days * 86400
        with connection.cursor() as cur:
            cur.execute("SET LOCAL synchronous_commit = off")
            cur.execute(
                """
                INSERT INTO proxy_requestrecord
                  (generation_id, api_key_id, team_id, end_user, requested_model, model_id, upstream_model, status,
                   http_status, error_type, error_message, streamed, input_tokens, cache_write_5m_tokens,
                   cache_write_1h_tokens, cache_read_tokens, output_tokens, output_estimated, finish_reason,
                   latency_ms, ttft_ms, upstream_request_id, completion, created, priced_at)
                SELECT 'chatcmpl-bench-' || g, k.id, k.team_id, '', m.public_id, m.id, m.upstream_id,
                       CASE WHEN g %% 50 = 0 THEN 'error' ELSE 'success' END,
                       CASE WHEN g %% 50 = 0 THEN 529 ELSE 200 END,
                       CASE WHEN g %% 50 = 0 THEN 'overloaded_error' ELSE '' END, '', g %% 3 = 0,
                       CASE WHEN g %% 50 = 0 THEN 0 ELSE 50 + (g * 7919) %% 4000 END,
                       CASE WHEN g %% 50 = 0 OR g %% 7 <> 0 THEN 0 ELSE (g * 31) %% 2000 END,
                       CASE WHEN g %% 50 = 0 OR g %% 13 <> 0 THEN 0 ELSE (g * 17) %% 1000 END,
                       CASE WHEN g %% 50 = 0 OR g %% 3 <> 0 THEN 0 ELSE (g * 131) %% 8000 END,
                       CASE WHEN g %% 50 = 0 THEN 0 ELSE 1 + (g * 104729) %% 1500 END,
                       false, CASE WHEN g %% 50 = 0 THEN '' ELSE 'stop' END,
                       200 + g %% 3000, 80 + g %% 500, 'req_bench_' || g, '',
                       now() - make_interval(secs => (g::float8 * %s / %s)),
                       now() - make_interval(secs => (g::float8 * %s / %s)) + interval '1 second'
                FROM generate_series(1::bigint, %s::bigint) AS g
                JOIN (SELECT id, team_id, row_number() OVER (ORDER BY id) - 1 AS i FROM proxy_apikey
                      WHERE id = ANY(%s)) k ON k.i = g %% %s
                JOIN (SELECT id, public_id, upstream_id, row_number() OVER (ORDER BY id) - 1 AS i FROM billing_model
                      WHERE id = ANY(%s)) m ON m.i = (g / 7) %% %s
                """,
                [span, args.records, span, args.records, args.records, keys, len(keys), models, len(models)],
            )
            cur.execute(
                """
                INSERT INTO billing_charge (request_id, team_id, api_key_id, model_id, price_id, amount, estimated,
                                            occurred_at, created)
                SELECT r.id, r.team_id, r.api_key_id, r.model_id, p.id,
                       CASE WHEN r.status = 'error' THEN 0 ELSE round((
                           r.input_tokens * p.input_per_mtok + r.output_tokens * p.output_per_mtok
                           + r.cache_write_5m_tokens * p.input_per_mtok * p.cache_write_5m_multiplier
                           + r.cache_write_1h_tokens * p.input_per_mtok * p.cache_write_1h_multiplier
                           + r.cache_read_tokens * p.input_per_mtok * p.cache_read_multiplier) / 1000000, 10) END,
                       false, r.created, r.priced_at
                FROM proxy_requestrecord r
                JOIN LATERAL (SELECT * FROM billing_price bp WHERE bp.model_id = r.model_id
                              AND bp.effective_from <= r.created ORDER BY bp.effective_from DESC LIMIT 1) p ON true
                """
            )
            cur.execute("ANALYZE proxy_requestrecord; ANALYZE billing_charge")
        print(f"  generated in {time.perf_counter() - t0:.1f} s", flush=True)
        # The SQL pricing is the same formula as billing.pricing.compute_cost (sample check).
        for charge in Charge.objects.select_related("request", "price").exclude(amount=0).order_by("?")[:200]:
            r = charge.request
            assert charge.amount == compute_cost(charge.price, r.tokens), charge.pk

    n_records, n_charges = RequestRecord.objects.count(), Charge.objects.count()
    print(f"records: {n_records:,}  charges: {n_charges:,}  (team bench: "
          f"{RequestRecord.objects.filter(team=team).count():,})")

    t0 = time.perf_counter()
    rows = rebuild()
    print(f"roll-up full build: {rows:,} hourly rows in {time.perf_counter() - t0:.2f} s")
    with connection.cursor() as cur:
        cur.execute("ANALYZE billing_usagerollup")
    _, med, lo, hi = timed(roll_up, 3)
    print(f"roll-up incremental run (nothing new): median {med:.0f} ms")
    # 1,000 new requests in the current hour, then the every-minute task.
    last = RequestRecord.objects.filter(team=team).order_by("-created").first()
    fresh = []
    for i in range(1000):
        last.pk, last.generation_id = None, f"chatcmpl-bench-new-{time.time_ns()}-{i}"
        last.save()
        fresh.append(Charge(request=last, team_id=last.team_id, api_key_id=last.api_key_id, model_id=last.model_id,
                            amount=0, occurred_at=last.created))
    Charge.objects.bulk_create(fresh)
    _, med_new, _, _ = timed(roll_up, 1)
    print(f"roll-up incremental run (1,000 new charges): {med_new:.0f} ms")
    print(f"usage roll-up rows: {UsageRollup.objects.count():,}")

    client = Client()
    client.force_login(user)
    month = current_month()
    prev = shift_month(month, -1)
    results = []

    def page(label, path):
        def go():
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)
            return response
        response, med, lo, hi = timed(go)
        results.append((label, med, lo, hi, len(response.content)))

    page("dashboard /", "/")
    page("keys /keys/", "/keys/")
    page("request log /requests/", "/requests/")
    page("request log, errors only", "/requests/?status=error")
    page("request log, page 2", client.get("/requests/").context["next_query"] and
         "/requests/?" + client.get("/requests/").context["next_query"])
    page("reports index", "/reports/")
    for m in (month, prev):
        page(f"report page {m:%Y-%m}", f"/reports/{m:%Y-%m}/")
        page(f"report CSV {m:%Y-%m}", f"/reports/{m:%Y-%m}.csv")
        page(f"statement {m:%Y-%m}", f"/reports/{m:%Y-%m}/statement/")

    print(f"\n{'page (team with ~' + format(RequestRecord.objects.filter(team=team).count(), ',') + ' records)':<58}"
          f"{'median':>9}{'min':>9}{'max':>9}")
    for label, med, lo, hi, _size in results:
        print(f"{label:<58}{med:>7.1f}ms{lo:>7.1f}ms{hi:>7.1f}ms")

    print("\nfinal statements from the ledger (Charges), as the 1st-of-month task/command does:")
    for m in (prev, month):
        stored, med, lo, hi = timed(lambda m=m: generate_statement(team, m), 3)
        print(f"  generate_statement {m:%Y-%m}: {stored.requests:,} requests, USD {stored.total:.2f}  "
              f"median {med:.0f} ms")
        _, med, _, _ = timed(lambda m=m: client.get(f"/reports/{m:%Y-%m}.csv"))
        print(f"  CSV of the stored {m:%Y-%m} statement: median {med:.1f} ms")


if __name__ == "__main__":
    sys.exit(main())
