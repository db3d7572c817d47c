{{ config(tags=['blocking'], severity='warn', meta={'dagster': {'ref': {'name': 'fct_invoice_lines'}}}) }}
-- A usage cliff on an invoice about to be finalised. A warning in a build; finalisation runs it
-- with test warnings as errors (ledger.run_blocking_checks), so it stops finalisation, not billing. A failure means a subscription's usage of a
-- metric in a closed period fell below var('usage_cliff_ratio') (10%) of its rate over the
-- three periods before, per second of service (a short last period is not a cliff by itself),
-- where each of those periods had at least var('usage_cliff_min_units') (100) units: an
-- ingestion gap or a broken meter is far likelier than a customer who stopped overnight. Each,
-- not on average: one large event in three otherwise empty periods is no steady usage to fall
-- from (the demo's generator made such a "cliff" on some days). Check the
-- events, load what is missing, then re-run; a genuine drop is accepted with
-- `meterline finalise --accept-usage-cliffs` (docs/invoice-lifecycle.md).
with lines as (
    select * from {{ ref('fct_invoice_lines') }}
    where fee_kind = 'charge'
        and not is_progressive_billing
        and corrected_invoice_line_id is null
),

per_period as (
    select
        lines.subscription_id,
        lines.metric_code,
        lines.billing_period_id,
        min(lines.status) as status,
        min(lines.service_start_at) as service_start_at,
        {{ seconds_between('min(lines.service_start_at)', 'max(lines.service_end_at)') }} as service_seconds,
        sum(lines.quantity) as units
    from lines
    group by 1, 2, 3
),

with_history as (
    select
        per_period.*,
        count(*) over (partition by per_period.subscription_id, per_period.metric_code
                       order by per_period.service_start_at rows between 3 preceding and 1 preceding) as periods_before,
        sum(per_period.units) over (partition by per_period.subscription_id, per_period.metric_code
                                    order by per_period.service_start_at rows between 3 preceding and 1 preceding)
            as units_before,
        sum(per_period.service_seconds) over (partition by per_period.subscription_id, per_period.metric_code
                                              order by per_period.service_start_at
                                              rows between 3 preceding and 1 preceding) as seconds_before,
        min(per_period.units) over (partition by per_period.subscription_id, per_period.metric_code
                                    order by per_period.service_start_at
                                    rows between 3 preceding and 1 preceding) as least_units_before
    from per_period
)

select *
from with_history
where with_history.status = 'closed'
    and with_history.periods_before = 3
    and with_history.least_units_before >= {{ var('usage_cliff_min_units', 100) }}
    and with_history.service_seconds > 0
    and with_history.units * with_history.seconds_before
        < {{ var('usage_cliff_ratio', 0.1) }} * with_history.units_before * with_history.service_seconds
