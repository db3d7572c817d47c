{{
    config(
        materialized='table' if target.type == 'spark' else 'incremental',
        incremental_strategy='delete+insert',
        unique_key='billing_period_id',
        pre_hook="{% if is_incremental() %}{{ stale_calendar_pieces_deletion() }}{% endif %}",
    )
}}
-- One row per piece of a billing period's service that lies in one UTC day and one local day
-- of the customer, for the subscription and again for its customer (events may name either):
-- what an event at an instant in the piece is metered on (macros/metering.sql). An event finds
-- its piece by equality on its owner and UTC date, then a range check on the day's two or three
-- pieces, instead of a range join over every period of its subscription; the piece also gives
-- the event's local date (usage_date), which progressive billing and revenue recognition count
-- days in, without converting each event's time zone.
-- Incremental: a run spells out the pieces of the periods that are new or changed since the
-- last (period_fingerprint: everything the pieces are computed from), after its pre-hook
-- deleted the pieces of changed and vanished periods; a daily run so adds the periods the new
-- as_of reached, not every period again (5M pieces at 5,000 customers). Spark rebuilds it.
with billing_periods as (
    {{ calendar_periods() }}
    {%- if is_incremental() %}
    where not exists (
        select 1 from {{ this }} as built
        where built.billing_period_id = calendar_periods.billing_period_id
            and built.period_fingerprint = calendar_periods.period_fingerprint
    )
    {%- endif %}
),

-- Each local day of each period's service, with its bounds in UTC (a day across a DST change
-- lasts 23 or 25 hours).
local_days as (
    select
        billing_periods.billing_period_id,
        billing_periods.subscription_id,
        billing_periods.external_subscription_id,
        billing_periods.customer_id,
        billing_periods.plan_code,
        billing_periods.service_start_at,
        billing_periods.service_end_at,
        billing_periods.late_events_lookback_days,
        billing_periods.period_fingerprint,
        cast({{ dbt.dateadd('day', 'series.n', 'billing_periods.service_start_date') }} as date) as usage_date,
        {{ to_utc('cast(' ~ dbt.dateadd('day', 'series.n', 'billing_periods.service_start_date') ~ ' as timestamp)',
                  'billing_periods.billing_timezone') }} as day_start_at,
        {{ to_utc('cast(' ~ dbt.dateadd('day', 'series.n + 1', 'billing_periods.service_start_date') ~ ' as timestamp)',
                  'billing_periods.billing_timezone') }} as day_end_at
    from billing_periods
    cross join lateral {{ integer_series(dbt.datediff(
        'billing_periods.service_start_date',
        date_before(from_utc('billing_periods.service_end_at', 'billing_periods.billing_timezone')), 'day')) }} as series
),

service_days as (
    select
        local_days.*,
        case when local_days.service_start_at > local_days.day_start_at
            then local_days.service_start_at else local_days.day_start_at end as segment_start_at,
        case when local_days.service_end_at < local_days.day_end_at
            then local_days.service_end_at else local_days.day_end_at end as segment_end_at
    from local_days
),

-- Each local day's part in each UTC day it overlaps.
pieces as (
    select
        service_days.*,
        cast({{ dbt.dateadd('day', 'series.n', 'cast(service_days.segment_start_at as date)') }} as date) as utc_date
    from service_days
    cross join lateral {{ integer_series(dbt.datediff('cast(service_days.segment_start_at as date)',
                                                      date_before('service_days.segment_end_at'), 'day')) }} as series
    where service_days.segment_start_at < service_days.segment_end_at
),

bounded as (
    select
        pieces.*,
        case when pieces.segment_start_at > cast(pieces.utc_date as timestamp)
            then pieces.segment_start_at else cast(pieces.utc_date as timestamp) end as piece_start_at,
        case when pieces.segment_end_at < cast({{ dbt.dateadd('day', 1, 'pieces.utc_date') }} as timestamp)
            then pieces.segment_end_at else cast({{ dbt.dateadd('day', 1, 'pieces.utc_date') }} as timestamp) end
            as piece_end_at
    from pieces
),

owners as (
    select 'subscription' as owner_kind, bounded.external_subscription_id as owner_id, bounded.*
    from bounded

    union all

    select 'customer' as owner_kind, bounded.customer_id as owner_id, bounded.*
    from bounded
),

final as (
    select
        owners.owner_kind,
        owners.owner_id,
        owners.utc_date,
        owners.piece_start_at,
        owners.piece_end_at,
        owners.billing_period_id,
        owners.subscription_id,
        owners.customer_id,
        owners.plan_code,
        owners.usage_date,
        owners.late_events_lookback_days,
        owners.period_fingerprint
    from owners
    where owners.piece_start_at < owners.piece_end_at
)

select * from final
