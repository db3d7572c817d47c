-- One row per subscription phase with the instants it is billed on (docs/billing-calendar.md,
-- "Plan changes"). A later phase of the same external subscription is a plan change requested
-- at its started_at: an upgrade (the new plan's yearly base fee is at least the old one's)
-- takes effect then; a downgrade at the end of the old plan's period that holds the request.
-- A phase ends where the next one takes effect, or at ended_at (a termination).
with subscriptions as (
    select * from {{ ref('stg_catalog__subscriptions') }}
),

customers as (
    select * from {{ ref('stg_catalog__customers') }}
),

plans as (
    select * from {{ ref('stg_catalog__plans') }}
),

phases as (
    select
        subscriptions.*,
        customers.billing_timezone,
        plans.billing_interval,
        plans.base_amount * case plans.billing_interval
            when 'weekly' then 52 when 'monthly' then 12 when 'quarterly' then 4 when 'semiannual' then 2 else 1
        end as yearly_amount
    from subscriptions
    inner join customers
        on subscriptions.customer_id = customers.customer_id
    inner join plans
        on subscriptions.plan_code = plans.plan_code
),

with_previous as (
    select
        phases.*,
        lag(phases.yearly_amount) over (partition by phases.external_subscription_id order by phases.phase)
            as previous_yearly_amount,
        lag(phases.billing_interval) over (partition by phases.external_subscription_id order by phases.phase)
            as previous_interval,
        lag(phases.billing_time) over (partition by phases.external_subscription_id order by phases.phase)
            as previous_billing_time,
        lag(phases.started_at) over (partition by phases.external_subscription_id order by phases.phase)
            as previous_started_at
    from phases
),

changes as (
    select
        with_previous.*,
        case
            when with_previous.phase = 1 then cast(null as {{ dbt.type_string() }})
            when with_previous.yearly_amount >= with_previous.previous_yearly_amount then 'upgrade'
            else 'downgrade'
        end as change_kind,
        {{ from_utc('with_previous.started_at', 'with_previous.billing_timezone') }} as requested_local,
        -- The old plan's periods, anchored on its (requested) start.
        {{ billing_anchor('with_previous.previous_billing_time', 'with_previous.previous_interval',
                          from_utc('with_previous.previous_started_at', 'with_previous.billing_timezone')) }}
            as previous_anchor_local,
        {{ interval_months('with_previous.previous_interval') }} as previous_months
    from with_previous
),

effective_starts as (
    select
        changes.*,
        case when changes.change_kind = 'downgrade'
            then {{ to_utc(period_boundary('changes.previous_anchor_local', 'changes.previous_months',
                                           period_index_at('changes.previous_anchor_local', 'changes.previous_months',
                                                           'changes.requested_local') ~ ' + 1'),
                           'changes.billing_timezone') }}
            else changes.started_at
        end as effective_started_at
    from changes
),

final as (
    select
        effective_starts.subscription_id,
        effective_starts.external_subscription_id,
        effective_starts.phase,
        effective_starts.customer_id,
        effective_starts.plan_code,
        effective_starts.billing_time,
        effective_starts.change_kind,
        effective_starts.started_at as requested_at,
        effective_starts.effective_started_at as started_at,
        coalesce(
            lead(effective_starts.effective_started_at) over (
                partition by effective_starts.external_subscription_id order by effective_starts.phase),
            effective_starts.ended_at
        ) as ended_at,
        -- Why the phase ends: the next phase's change (upgrade, downgrade) or a termination.
        coalesce(
            lead(effective_starts.change_kind) over (
                partition by effective_starts.external_subscription_id order by effective_starts.phase),
            case when effective_starts.ended_at is not null then 'termination' end
        ) as end_reason
    from effective_starts
)

select * from final
