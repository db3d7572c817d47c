{{ config(tags=['blocking'], severity='warn', meta={'dagster': {'ref': {'name': 'fct_event_reconciliation'}}}) }}
-- Events for customers or subscriptions the catalog does not know. A warning in a build; an
-- error when finalisation runs it (with test warnings as errors: ledger.run_blocking_checks). A failure means more than
-- var('max_unknown_customer_ratio') (1%) of the accepted events name an unknown customer or
-- subscription, over at least var('unknown_customer_min_events') (1,000) events: usually a
-- catalog that lags behind sign-ups, or ids sent in the wrong field. Those events are not
-- billed to anyone, so nothing is finalised until the catalog or the sender is fixed.
with reconciliation as (
    select * from {{ ref('fct_event_reconciliation') }}
),

counts as (
    select
        sum(case when reconciliation.outcome <> 'rejected' then reconciliation.event_count else 0 end) as accepted,
        sum(case when reconciliation.reason in ('unknown_customer', 'unknown_subscription')
            then reconciliation.event_count else 0 end) as unknown
    from reconciliation
)

select *
from counts
where counts.accepted >= {{ var('unknown_customer_min_events', 1000) }}
    and counts.unknown > {{ var('max_unknown_customer_ratio', 0.01) }} * counts.accepted
