-- One row per invoice line and applied coupon that discounts it: the coupon's discount on the
-- invoice and the line's share of it (docs/invoice-amounts.md).
--
-- A coupon discounts the fees it is eligible for (all fees, or those of its plans or metrics;
-- never one-off add-ons) on the customer's invoices issued from when it was applied up to its
-- expiration date. `once` discounts the first such invoice, `recurring` the first N, `forever`
-- all; a fixed amount applied `once` instead keeps what an invoice could not absorb for the
-- next ones until it is spent.
--
-- A customer's coupons apply one after the other, in a fixed order: coupons limited to
-- metrics, then to plans, then the others, each group by when they were applied. Each coupon
-- takes at most what earlier coupons left of its eligible fees (rounded down to the minor
-- unit), so an invoice never goes below zero, and is spread over those fees in proportion to
-- what is left of them. Portable SQL has no loop: the steps are unrolled, one per coupon rank,
-- as many as the customer with the most coupons holds (macros/unrolled_steps.sql).
{%- set steps = unrolled_steps(ref('stg_catalog__applied_coupons'), 'customer_id', 'max_coupons_per_customer') %}

with fees as (
    select * from {{ ref('int_invoice_fees') }}
),

applied_coupons as (
    select * from {{ ref('stg_catalog__applied_coupons') }}
),

coupons as (
    select * from {{ ref('stg_catalog__coupons') }}
),

coupon_limits as (
    select * from {{ ref('stg_catalog__coupon_limits') }}
),

customers as (
    select * from {{ ref('stg_catalog__customers') }}
),

limit_kinds as (
    select
        coupon_limits.coupon_code,
        min(coupon_limits.limited_to) as limited_to
    from coupon_limits
    group by 1
),

ordered_coupons as (
    select
        applied_coupons.applied_coupon_id,
        applied_coupons.customer_id,
        applied_coupons.applied_at,
        coupons.coupon_code,
        coupons.coupon_name,
        coupons.coupon_type,
        coupons.percentage_rate,
        coupons.coupon_amount,
        coupons.frequency,
        coupons.frequency_duration,
        coupons.expiration_date,
        limit_kinds.limited_to,
        row_number() over (
            partition by applied_coupons.customer_id
            order by
                case limit_kinds.limited_to when 'metric' then 1 when 'plan' then 2 else 3 end,
                applied_coupons.applied_at,
                applied_coupons.file_row,
                applied_coupons.applied_coupon_id
        ) as coupon_rank
    from applied_coupons
    inner join coupons
        on applied_coupons.coupon_code = coupons.coupon_code
    left join limit_kinds
        on coupons.coupon_code = limit_kinds.coupon_code
),

eligible_lines as (
    select
        ordered_coupons.applied_coupon_id,
        ordered_coupons.coupon_rank,
        fees.invoice_line_id,
        fees.invoice_id,
        fees.invoice_at,
        fees.minor_unit,
        fees.billable_amount as amount
    from ordered_coupons
    inner join customers
        on ordered_coupons.customer_id = customers.customer_id
    inner join fees
        on ordered_coupons.customer_id = fees.customer_id
        and fees.invoice_at >= ordered_coupons.applied_at
    where fees.fee_kind <> 'add_on'
        and fees.billable_amount > 0
        and (
            ordered_coupons.expiration_date is null
            or cast({{ from_utc('fees.invoice_at', 'customers.billing_timezone') }} as date)
                <= ordered_coupons.expiration_date
        )
        and (
            ordered_coupons.limited_to is null
            or exists (
                select 1
                from coupon_limits
                where coupon_limits.coupon_code = ordered_coupons.coupon_code
                    and (
                        (coupon_limits.limited_to = 'plan' and coupon_limits.target_code = fees.base_plan_code)
                        or (coupon_limits.limited_to = 'metric' and coupon_limits.target_code = fees.metric_code)
                    )
            )
        )
),

-- The invoices with eligible fees, counted per coupon: what `once` and `recurring` count.
coupon_invoices as (
    select
        eligible_lines.applied_coupon_id,
        eligible_lines.invoice_id,
        eligible_lines.invoice_at,
        eligible_lines.minor_unit,
        -- Invoices at one instant (a progressive billing invoice beside a period's) in id order.
        row_number() over (
            partition by eligible_lines.applied_coupon_id order by eligible_lines.invoice_at, eligible_lines.invoice_id
        ) as use_number
    from eligible_lines
    group by 1, 2, 3, 4
),

in_force as (
    select
        coupon_invoices.invoice_id,
        coupon_invoices.use_number,
        coupon_invoices.minor_unit,
        ordered_coupons.*
    from coupon_invoices
    inner join ordered_coupons
        on coupon_invoices.applied_coupon_id = ordered_coupons.applied_coupon_id
    where ordered_coupons.frequency = 'forever'
        or (ordered_coupons.frequency = 'once'
            and (ordered_coupons.coupon_type = 'fixed_amount' or coupon_invoices.use_number = 1))
        or (ordered_coupons.frequency = 'recurring' and coupon_invoices.use_number <= ordered_coupons.frequency_duration)
),

-- Each coupon on each invoice line it may discount: one row per line and coupon rank (a
-- customer has one coupon per rank).
coupon_lines as (
    select
        eligible_lines.invoice_line_id,
        in_force.applied_coupon_id,
        in_force.customer_id,
        in_force.coupon_code,
        in_force.coupon_name,
        in_force.coupon_type,
        in_force.coupon_rank,
        in_force.use_number,
        in_force.frequency,
        in_force.percentage_rate,
        in_force.coupon_amount,
        in_force.minor_unit
    from in_force
    inner join eligible_lines
        on in_force.applied_coupon_id = eligible_lines.applied_coupon_id
        and in_force.invoice_id = eligible_lines.invoice_id
),

-- What is left of each eligible line before the first coupon.
lines_0 as (
    select
        fees.invoice_line_id,
        fees.invoice_id,
        {{ to_precise_money('fees.billable_amount') }} as remaining_amount
    from fees
    where fees.invoice_line_id in (select eligible_lines.invoice_line_id from eligible_lines)
),

{#- Every step reads the previous one exactly once, one row per line, with window functions
    for what spans an invoice or a coupon's invoices: Spark inlines every common table
    expression into the statement that creates the table, so a step read twice would double
    the plan at every step (docs/engines.md). #}
{%- for step in range(1, steps + 1) %}

-- Coupon rank {{ step }}: what is left of its eligible lines on each invoice.
bases_{{ step }} as (
    select
        previous.invoice_line_id,
        previous.invoice_id,
        previous.remaining_amount as line_eligible_amount,
        coupon_lines.applied_coupon_id,
        coupon_lines.customer_id,
        coupon_lines.coupon_code,
        coupon_lines.coupon_name,
        coupon_lines.coupon_type,
        coupon_lines.coupon_rank,
        coupon_lines.use_number,
        coupon_lines.frequency,
        coupon_lines.percentage_rate,
        coupon_lines.coupon_amount,
        coupon_lines.minor_unit,
        sum(previous.remaining_amount) over (
            partition by coupon_lines.applied_coupon_id, previous.invoice_id
        ) as eligible_amount,
        -- One line stands for its invoice in the coupon's running total below.
        row_number() over (
            partition by coupon_lines.applied_coupon_id, previous.invoice_id order by previous.invoice_line_id
        ) as invoice_line_number
    from lines_{{ step - 1 }} as previous
    left join coupon_lines
        on previous.invoice_line_id = coupon_lines.invoice_line_id
        and coupon_lines.coupon_rank = {{ step }}
),

usable_{{ step }} as (
    select
        bases_{{ step }}.*,
        {{ floor_money('bases_' ~ step ~ '.eligible_amount', 'bases_' ~ step ~ '.minor_unit') }} as usable_amount,
        {{ round_money('bases_' ~ step ~ '.coupon_amount', 'bases_' ~ step ~ '.minor_unit') }} as fixed_amount,
        -- What this and the coupon's earlier invoices could take.
        sum(case when bases_{{ step }}.invoice_line_number = 1
            then {{ floor_money('bases_' ~ step ~ '.eligible_amount', 'bases_' ~ step ~ '.minor_unit') }} end) over (
            partition by bases_{{ step }}.applied_coupon_id
            order by bases_{{ step }}.use_number
            range between unbounded preceding and current row
        ) as usable_to_date
    from bases_{{ step }}
),

requested_{{ step }} as (
    select
        usable_{{ step }}.*,
        case
            when usable_{{ step }}.coupon_type = 'percentage' then
                {{ round_money(percent_of('usable_' ~ step ~ '.eligible_amount', 'usable_' ~ step ~ '.percentage_rate'), 'usable_' ~ step ~ '.minor_unit') }}
            -- A fixed amount applied once: what earlier invoices did not take (all of it
            -- that they could take, since each takes as much as it can).
            when usable_{{ step }}.frequency = 'once' then
                cast(case
                    when usable_{{ step }}.fixed_amount
                        - (usable_{{ step }}.usable_to_date - usable_{{ step }}.usable_amount) > 0
                    then usable_{{ step }}.fixed_amount
                        - (usable_{{ step }}.usable_to_date - usable_{{ step }}.usable_amount)
                    else 0
                end as {{ rounded_money_type() }})
            else usable_{{ step }}.fixed_amount
        end as requested_amount
    from usable_{{ step }}
),

discounts_{{ step }} as (
    select
        requested_{{ step }}.*,
        requested_{{ step }}.requested_amount > 0 as is_discounted,
        cast(
            case
                when requested_{{ step }}.requested_amount < requested_{{ step }}.usable_amount
                    then requested_{{ step }}.requested_amount
                else requested_{{ step }}.usable_amount
            end
            as {{ rounded_money_type() }}
        ) as discount_amount
    from requested_{{ step }}
),

-- Each line's share, in proportion to what is left of it (exact: macros/money.sql). A
-- coupon's lines on an invoice share one partition, apart from the lines it does not discount.
shares_{{ step }} as (
    select
        discounts_{{ step }}.*,
        case when discounts_{{ step }}.is_discounted then
            {{ spread_in_proportion(
                'discounts_' ~ step ~ '.discount_amount',
                'discounts_' ~ step ~ '.line_eligible_amount',
                'discounts_' ~ step ~ '.eligible_amount',
                'discounts_' ~ step ~ '.applied_coupon_id, discounts_' ~ step ~ '.invoice_id',
                'discounts_' ~ step ~ '.invoice_line_id') }}
        end as line_discount_amount
    from discounts_{{ step }}
),

lines_{{ step }} as (
    select
        shares_{{ step }}.invoice_line_id,
        shares_{{ step }}.invoice_id,
        {{ to_precise_money('shares_' ~ step ~ '.line_eligible_amount - coalesce(shares_' ~ step ~ '.line_discount_amount, 0)') }}
            as remaining_amount
    from shares_{{ step }}
),
{%- endfor %}

every_share as (
    {%- for step in range(1, steps + 1) %}
    select
        shares_{{ step }}.invoice_line_id,
        shares_{{ step }}.invoice_id,
        shares_{{ step }}.applied_coupon_id,
        shares_{{ step }}.customer_id,
        shares_{{ step }}.coupon_code,
        shares_{{ step }}.coupon_name,
        shares_{{ step }}.coupon_type,
        shares_{{ step }}.coupon_rank,
        shares_{{ step }}.use_number,
        shares_{{ step }}.frequency,
        shares_{{ step }}.eligible_amount,
        shares_{{ step }}.requested_amount,
        shares_{{ step }}.discount_amount,
        shares_{{ step }}.line_eligible_amount,
        shares_{{ step }}.line_discount_amount
    from shares_{{ step }}
    where shares_{{ step }}.is_discounted
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

final as (
    select
        every_share.invoice_line_id,
        every_share.invoice_id,
        every_share.applied_coupon_id,
        every_share.customer_id,
        every_share.coupon_code,
        every_share.coupon_name,
        every_share.coupon_type,
        every_share.coupon_rank,
        every_share.use_number,
        every_share.eligible_amount,
        every_share.requested_amount,
        every_share.discount_amount,
        -- What a fixed coupon applied once keeps for the next invoices.
        cast(
            case when every_share.coupon_type = 'fixed_amount' and every_share.frequency = 'once'
                then every_share.requested_amount - every_share.discount_amount else 0 end
            as {{ rounded_money_type() }}
        ) as carried_amount,
        every_share.line_eligible_amount,
        {{ to_precise_money('every_share.line_discount_amount') }} as line_discount_amount
    from every_share
)

select * from final
