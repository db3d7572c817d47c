{{ config(meta={'dagster': {'ref': {'name': 'fct_revenue_recognition'}}}) }}
-- day_share (macros/revenue.sql) takes a day's share of a ratable service in 64-bit integers on
-- DuckDB, for speed; it must be exactly exact_ratio's value. Every day of services of 1 to 400
-- days (80,000 shares).
with services as (
    select series.n + 1 as days
    from {{ integer_series(399) }} as series
),

days as (
    select services.days, series.n as day
    from services
    cross join lateral {{ integer_series('services.days') }} as series
),

shares as (
    select
        days.days,
        days.day,
        {{ day_share('days.day', 'days.days') }} as day_share,
        {{ exact_ratio('days.day', 'days.days') }} as exact_share
    from days
)

select shares.*
from shares
where shares.day_share <> shares.exact_share
