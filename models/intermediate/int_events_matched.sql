{{ config(materialized='view') }}
-- One row per deduplicated event: the invoice line (subscription x period x price) it is
-- billed on, or why it is excluded; events after the run's as_of are held back
-- ('after_cutoff'). A view: the metering tables count events in bulk (int_usage_increments)
-- and keep only some one by one (int_events_itemised); this matches any event on demand with
-- the same definition (macros/metering.sql), for lineage (fct_invoice_line_events) and audits.
-- Reading it whole reads every event: filter it by subscription or customer and time.
{%- set catalog = metering_catalog() %}

with events as (
    select * from {{ ref('int_events_deduplicated') }}
),

matched as (
    {{ match_events('events', catalog) }}
),

prices as (
    {{ resolve_prices('matched', catalog) }}
),

final as (
    select
        matched.event_id,
        matched.transaction_id,
        matched.event_at,
        matched.loaded_at,
        matched.metric_code,
        matched.properties,
        matched.batch_id,
        matched.source_file,
        matched.source_row,
        -- The phase the event is billed on.
        case when matched.exclusion_reason is null then matched.subscription_id end as subscription_id,
        case when matched.exclusion_reason is null then matched.customer_id end as customer_id,
        case when matched.exclusion_reason is null then matched.billing_period_id end as billing_period_id,
        case when matched.exclusion_reason is null then matched.usage_date end as usage_date,
        -- The price the event is billed at: the charge's default, or the filter it matched.
        case when matched.exclusion_reason is null then prices.price_charge_id end as charge_id,
        case when matched.exclusion_reason is null then prices.group_key end as group_key,
        case when matched.exclusion_reason is null then
            {{ invoice_line_id('matched.billing_period_id', 'prices.price_charge_id', 'prices.group_key',
                               'matched.is_pay_in_advance', 'matched.transaction_id') }}
        end as invoice_line_id,
        case when matched.exclusion_reason is null then matched.units end as units,
        case when matched.exclusion_reason is null then matched.unique_value end as unique_value,
        case when matched.exclusion_reason is null then matched.operation_type end as operation_type,
        case when matched.exclusion_reason = 'unmatched'
            then {{ classify_unmatched('matched.owner_kind', 'matched.owner_id') }}
            else matched.exclusion_reason
        end as exclusion_reason
    from matched
    {{ join_resolved_prices('matched', catalog) }}
)

select * from final
