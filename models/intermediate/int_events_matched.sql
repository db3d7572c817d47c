{{
    config(
        materialized=row_replacing_materialization(),
        incremental_strategy=row_replacing_strategy(),
        unique_key='event_id',
    )
}}
-- One row per deduplicated event: the subscription, billing period and charge it is billed
-- on (its invoice line), or the reason it is excluded. Events that happen after the run's
-- as_of are held back ('after_cutoff') and matched again by a later run.
-- Incremental: new events only, plus the held-back ones. A changed catalog (subscriptions,
-- plans) needs a full refresh; `meterline run` does that by itself when the price-book
-- fingerprint changes.
with events as (
    select * from {{ ref('int_events_deduplicated') }}
),

-- Events name a subscription by its external id, which all its phases (plan changes) share;
-- the billing period matched below, by time, picks the phase.
subscription_phases as (
    select * from {{ ref('int_subscriptions') }}
),

subscriptions as (
    select
        subscription_phases.external_subscription_id as subscription_id,
        subscription_phases.customer_id,
        min(subscription_phases.started_at) as started_at,
        case when count(subscription_phases.ended_at) = count(*) then max(subscription_phases.ended_at) end as ended_at
    from subscription_phases
    group by 1, 2
),

customers as (
    select * from {{ ref('stg_catalog__customers') }}
),

billing_periods as (
    select * from {{ ref('int_billing_periods') }}
),

charges as (
    select * from {{ ref('stg_catalog__charges') }}
),

filter_values as (
    select * from {{ ref('stg_catalog__charge_filter_values') }}
),

candidates as (
    {% if is_incremental() %}
    select events.*
    from events
    where events.loaded_at > (select coalesce(max(loaded_at), cast('1900-01-01' as timestamp)) from {{ this }})
    union all
    select events.*
    from events
    inner join {{ this }} as held_back
        on events.event_id = held_back.event_id
    where held_back.exclusion_reason = 'after_cutoff'
    {% else %}
    select events.* from events
    {% endif %}
),

resolved as (
    select
        candidates.event_id,
        candidates.transaction_id,
        candidates.metric_code,
        candidates.event_at,
        candidates.loaded_at,
        candidates.properties,
        candidates.external_subscription_id,
        candidates.external_customer_id,
        by_id.subscription_id as subscription_by_id,
        known_customers.customer_id as known_customer_id,
        coalesce(by_id.subscription_id, by_customer.subscription_id) as subscription_id
    from candidates
    left join subscriptions as by_id
        on candidates.external_subscription_id = by_id.subscription_id
    left join customers as known_customers
        on candidates.external_customer_id = known_customers.customer_id
    -- An event that names only its customer goes to the subscription active at that instant.
    left join subscriptions as by_customer
        on candidates.external_subscription_id is null
        and candidates.external_customer_id = by_customer.customer_id
        and candidates.event_at >= by_customer.started_at
        and (by_customer.ended_at is null or candidates.event_at < by_customer.ended_at)
),

matched as (
    select
        resolved.*,
        billing_periods.billing_period_id,
        billing_periods.customer_id,
        billing_periods.subscription_id as phase_subscription_id,
        charges.charge_id,
        charges.aggregation,
        charges.field_name
    from resolved
    left join billing_periods
        on resolved.subscription_id = billing_periods.external_subscription_id
        and resolved.event_at >= billing_periods.service_start_at
        and resolved.event_at < billing_periods.service_end_at
    left join charges
        on billing_periods.plan_code = charges.plan_code
        and resolved.metric_code = charges.metric_code
        and charges.filter_position is null
),

-- The filters an event satisfies on every one of their keys; the most specific (most keys,
-- then the first declared) prices it, else the charge's default price does.
filter_matches as (
    select
        matched.event_id,
        filter_values.charge_id as filter_charge_id,
        filter_values.filter_key_count,
        filter_values.filter_position
    from matched
    inner join filter_values
        on matched.charge_id = filter_values.parent_charge_id
        and {{ json_property_text('matched.properties', 'filter_values.filter_key') }} = filter_values.filter_value
    group by 1, 2, 3, 4
    having count(*) = filter_values.filter_key_count
),

best_filters as (
    select ranked.event_id, ranked.filter_charge_id
    from (
        select
            filter_matches.*,
            row_number() over (
                partition by filter_matches.event_id
                order by filter_matches.filter_key_count desc, filter_matches.filter_position
            ) as specificity_rank
        from filter_matches
    ) as ranked
    where ranked.specificity_rank = 1
),

priced as (
    select
        matched.*,
        coalesce(best_filters.filter_charge_id, matched.charge_id) as price_charge_id,
        coalesce(charges.is_pay_in_advance, false) as is_pay_in_advance,
        -- Pricing groups: the event's values of the charge's group keys, e.g. "region=eu".
        case when charges.group_key_1 is not null then
            charges.group_key_1 || '=' || coalesce({{ json_property_text('matched.properties', 'charges.group_key_1') }}, '')
            || case when charges.group_key_2 is not null then
                '|' || charges.group_key_2 || '=' || coalesce({{ json_property_text('matched.properties', 'charges.group_key_2') }}, '')
                else '' end
            || case when charges.group_key_3 is not null then
                '|' || charges.group_key_3 || '=' || coalesce({{ json_property_text('matched.properties', 'charges.group_key_3') }}, '')
                else '' end
        end as group_key
    from matched
    left join best_filters
        on matched.event_id = best_filters.event_id
    left join charges
        on matched.charge_id = charges.charge_id
),

classified as (
    select
        priced.*,
        case
            when priced.event_at >= {{ as_of_timestamp() }} then 'after_cutoff'
            when priced.external_subscription_id is not null and priced.subscription_by_id is null
                then 'unknown_subscription'
            when priced.external_subscription_id is null and priced.known_customer_id is null
                then 'unknown_customer'
            when priced.subscription_id is null then 'no_active_subscription'
            when priced.billing_period_id is null then 'outside_subscription_period'
            when priced.charge_id is null then 'metric_not_in_plan'
            -- Loaded more than the billing entity's look-back after it happened: too late to bill.
            when lookback.late_events_lookback_days is not null
                and priced.event_at < {{ dbt.dateadd('day', '0 - lookback.late_events_lookback_days', 'priced.loaded_at') }}
                then 'beyond_lookback'
        end as exclusion_reason
    from priced
    left join customers as lookback
        on priced.customer_id = lookback.customer_id
),

final as (
    select
        classified.event_id,
        classified.event_at,
        classified.loaded_at,
        classified.metric_code,
        -- The phase the event is billed on; the subscription's id when it is not billed.
        coalesce(classified.phase_subscription_id, classified.subscription_id) as subscription_id,
        case when classified.exclusion_reason is null then classified.customer_id end as customer_id,
        case when classified.exclusion_reason is null then classified.billing_period_id end as billing_period_id,
        -- The price the event is billed at: the charge's default, or the filter it matched.
        case when classified.exclusion_reason is null then classified.price_charge_id end as charge_id,
        case when classified.exclusion_reason is null then classified.group_key end as group_key,
        -- An event billed in advance is a line of its own, invoiced when it happens; its id uses
        -- the transaction id (unique per subscription once deduplicated), not the load-specific event id.
        case when classified.exclusion_reason is null
            then {{ dbt.hash("classified.billing_period_id || '|' || classified.price_charge_id"
                             ~ " || coalesce('|' || classified.group_key, '')"
                             ~ " || case when classified.is_pay_in_advance then '|advance|' || classified.transaction_id"
                             ~ " else '' end") }}
        end as invoice_line_id,
        -- What the event adds: 1 to a count or a unique count, its field's value otherwise.
        case
            when classified.exclusion_reason is not null then null
            when classified.aggregation in ('count', 'unique_count') then cast(1 as {{ quantity_type() }})
            else cast({{ json_property_text('classified.properties', 'classified.field_name') }} as {{ quantity_type() }})
        end as units,
        case when classified.exclusion_reason is null and classified.aggregation = 'unique_count'
            then {{ json_property_text('classified.properties', 'classified.field_name') }}
        end as unique_value,
        case when classified.exclusion_reason is null and classified.aggregation = 'unique_count'
            then coalesce({{ json_property_text('classified.properties', "'operation_type'") }}, 'add')
        end as operation_type,
        classified.exclusion_reason,
        cast({{ dbt.current_timestamp() }} as timestamp) as matched_at
    from classified
)

select * from final
