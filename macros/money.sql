{#-
  Money in Meterline (docs/money.md):
  - precise amounts are decimal(38,12), quantities decimal(38,9): never float;
  - amounts are rounded in exactly one place, `round_money`, half-up (away from zero) to the
    currency's ISO 4217 exponent (seeds/currencies.csv: JPY 0, USD 2, KWD 3);
  - rounded amounts are stored as decimal(38,3): 3 is the largest exponent we bill in (a seed
    test enforces it).
-#}
{% macro precise_money_type() %}decimal(38, 12){% endmacro %}
{% macro rounded_money_type() %}decimal(38, 3){% endmacro %}
{% macro quantity_type() %}decimal(38, 9){% endmacro %}

{% macro to_precise_money(expression) -%}
    cast({{ expression }} as {{ precise_money_type() }})
{%- endmacro %}

{% macro round_money(amount, minor_unit) -%}
    {#- A constant scale per branch keeps every engine in exact decimal arithmetic (a
        column-valued scale makes some engines fall back to double). -#}
    {#- Each branch is cast on its own: a CASE takes one branch's type for all of them, and
        decimal(38,0) from the first branch would silently round USD to whole dollars. -#}
    cast(case {{ minor_unit }}
        when 0 then cast(round({{ amount }}, 0) as {{ rounded_money_type() }})
        when 2 then cast(round({{ amount }}, 2) as {{ rounded_money_type() }})
        when 3 then cast(round({{ amount }}, 3) as {{ rounded_money_type() }})
    end as {{ rounded_money_type() }})
{%- endmacro %}

{#- Exact division, rounded half-up to 12 decimals (a precise amount or rate).
    DuckDB divides decimals in DOUBLE, which would put a float into money, so its variant does
    the division in 128-bit integers. The numerator may have at most 12 decimals and the
    denominator at most 9 (money and quantity types). -#}
{% macro divide_exactly(numerator, denominator) -%}
    {{ return(adapter.dispatch('divide_exactly', 'meterline')(numerator, denominator)) }}
{%- endmacro %}

{% macro default__divide_exactly(numerator, denominator) -%}
    cast(({{ numerator }}) / ({{ denominator }}) as {{ precise_money_type() }})
{%- endmacro %}

{% macro postgres__divide_exactly(numerator, denominator) -%}
    {#- numeric first: integer / integer is an integer division on Postgres (17 / 30 = 0). -#}
    cast(cast({{ numerator }} as numeric) / ({{ denominator }}) as {{ precise_money_type() }})
{%- endmacro %}

{% macro duckdb__divide_exactly(numerator, denominator) -%}
    {#- n/d = N/(D*1e3) with N = n*1e12 and D = d*1e9 as integers; the result scaled by 1e12
        is N*1e9/D, rounded half away from zero. -#}
    cast(
        sign(cast({{ numerator }} as {{ precise_money_type() }})) * sign(cast({{ denominator }} as {{ quantity_type() }}))
        * (
            (2 * abs(cast(cast({{ numerator }} as {{ precise_money_type() }}) * 1000000000000 as hugeint)) * 1000000000
             + abs(cast(cast({{ denominator }} as {{ quantity_type() }}) * 1000000000 as hugeint)))
            // (2 * abs(cast(cast({{ denominator }} as {{ quantity_type() }}) * 1000000000 as hugeint)))
        )
        as decimal(38, 0)
    ) * cast(0.000000000001 as decimal(13, 12))
{%- endmacro %}

{% macro spark__divide_exactly(numerator, denominator) -%}
    {#- As DuckDB's, in decimal(38, 0): Spark keeps only 6 decimals of a quotient that could
        overflow 38 digits, so the division is done on integers (spark_floor_quotient). -#}
    {%- set n = "cast(cast(" ~ numerator ~ " as " ~ precise_money_type() ~ ") * 1000000000000 as decimal(38, 0))" -%}
    {%- set d = "cast(cast(" ~ denominator ~ " as " ~ quantity_type() ~ ") * 1000000000 as decimal(38, 0))" -%}
    cast(
        {#- Spark's sign() is a double: the sign as an integer case instead. -#}
        case when ({{ n }} < 0) = ({{ d }} < 0) then 1 else -1 end
        * {{ spark_floor_quotient("2 * abs(" ~ n ~ ") * 1000000000 + abs(" ~ d ~ ")", "2 * abs(" ~ d ~ ")") }}
        * cast(0.000000000001 as decimal(13, 12))
        as {{ precise_money_type() }}
    )
{%- endmacro %}

{#- floor(a / b) for integers a >= 0 and 0 < b < 10^25 in decimal(38, 0), exactly, on Spark.
    Spark gives decimal(38, 0) / decimal(25, 0) 12 decimals (with allowPrecisionLoss off, as
    orchestration/spark.py sets it), and its last digit may be rounded up to the next integer:
    one step either way corrects that. -#}
{% macro spark_floor_quotient(a, b) -%}
    {%- set q = "cast(floor(cast(" ~ a ~ " as decimal(38, 0)) / cast(" ~ b ~ " as decimal(25, 0))) as decimal(38, 0))" -%}
    ({{ q }}
     - case when {{ q }} * cast({{ b }} as decimal(38, 0)) > cast({{ a }} as decimal(38, 0)) then 1 else 0 end
     + case when ({{ q }} + 1) * cast({{ b }} as decimal(38, 0)) <= cast({{ a }} as decimal(38, 0)) then 1 else 0 end)
{%- endmacro %}

{#- part / whole for two precise amounts (at most 12 decimals each), rounded half-up to 12
    decimals: the ratio of a share. divide_exactly would cut the whole to 9 decimals, and a
    ratio of a rounded whole is not the exact ratio. |part| must stay under 8.5e13 (DuckDB
    computes in 128-bit integers); shares use it with part <= whole. -#}
{% macro exact_ratio(part, whole) -%}
    {{ return(adapter.dispatch('exact_ratio', 'meterline')(part, whole)) }}
{%- endmacro %}

{% macro default__exact_ratio(part, whole) -%}
    cast(cast({{ part }} as {{ precise_money_type() }}) / cast({{ whole }} as {{ precise_money_type() }})
         as {{ precise_money_type() }})
{%- endmacro %}

{% macro postgres__exact_ratio(part, whole) -%}
    {#- numeric is arbitrary precision: an integer division at 12 decimals, half away from zero
        (a plain division is rounded to its own scale first, then again by the cast). -#}
    cast(
        sign(cast({{ part }} as numeric)) * sign(cast({{ whole }} as numeric))
        * div(2 * abs(cast({{ part }} as numeric)) * 1000000000000 + abs(cast({{ whole }} as numeric)),
              2 * abs(cast({{ whole }} as numeric)))
        * 0.000000000001
        as {{ precise_money_type() }}
    )
{%- endmacro %}

{% macro duckdb__exact_ratio(part, whole) -%}
    {#- p/w = P/W with P = p*1e12 and W = w*1e12 as integers; scaled by 1e12 it is P*1e12/W,
        rounded half away from zero. -#}
    cast(
        sign(cast({{ part }} as {{ precise_money_type() }})) * sign(cast({{ whole }} as {{ precise_money_type() }}))
        * (
            (2 * abs(cast(cast({{ part }} as {{ precise_money_type() }}) * 1000000000000 as hugeint)) * 1000000000000
             + abs(cast(cast({{ whole }} as {{ precise_money_type() }}) * 1000000000000 as hugeint)))
            // (2 * abs(cast(cast({{ whole }} as {{ precise_money_type() }}) * 1000000000000 as hugeint)))
        )
        as decimal(38, 0)
    ) * cast(0.000000000001 as decimal(13, 12))
{%- endmacro %}

{% macro spark__exact_ratio(part, whole) -%}
    {%- set p = "cast(cast(" ~ part ~ " as " ~ precise_money_type() ~ ") * 1000000000000 as decimal(38, 0))" -%}
    {%- set w = "cast(cast(" ~ whole ~ " as " ~ precise_money_type() ~ ") * 1000000000000 as decimal(38, 0))" -%}
    cast(
        case when ({{ p }} < 0) = ({{ w }} < 0) then 1 else -1 end
        * {{ spark_floor_quotient("2 * abs(" ~ p ~ ") * 1000000000000 + abs(" ~ w ~ ")", "2 * abs(" ~ w ~ ")") }}
        * cast(0.000000000001 as decimal(13, 12))
        as {{ precise_money_type() }}
    )
{%- endmacro %}

{#- ceil(numerator / denominator) for non-negative quantities, exactly (package counts). -#}
{% macro ceil_divide(numerator, denominator) -%}
    {{ return(adapter.dispatch('ceil_divide', 'meterline')(numerator, denominator)) }}
{%- endmacro %}

{% macro default__ceil_divide(numerator, denominator) -%}
    ceil(({{ numerator }}) / ({{ denominator }}))
{%- endmacro %}

{% macro duckdb__ceil_divide(numerator, denominator) -%}
    {#- In 128-bit integers at the quantity scale: (N + D - 1) // D. -#}
    cast(
        (cast(cast({{ numerator }} as {{ quantity_type() }}) * 1000000000 as hugeint)
         + cast(cast({{ denominator }} as {{ quantity_type() }}) * 1000000000 as hugeint) - 1)
        // cast(cast({{ denominator }} as {{ quantity_type() }}) * 1000000000 as hugeint)
        as decimal(38, 0)
    )
{%- endmacro %}

{% macro spark__ceil_divide(numerator, denominator) -%}
    {%- set n = "cast(cast(" ~ numerator ~ " as " ~ quantity_type() ~ ") * 1000000000 as decimal(38, 0))" -%}
    {%- set d = "cast(cast(" ~ denominator ~ " as " ~ quantity_type() ~ ") * 1000000000 as decimal(38, 0))" -%}
    {{ spark_floor_quotient(n ~ " + " ~ d ~ " - 1", d) }}
{%- endmacro %}

{#- The units of a graduated tier (above lower_bound, up to to_value) when the total is `units`. -#}
{% macro units_in_tier(units, lower_bound, to_value) -%}
    case
        when {{ units }} <= {{ lower_bound }} then 0
        when {{ to_value }} is null or {{ units }} < {{ to_value }} then {{ units }} - {{ lower_bound }}
        else {{ to_value }} - {{ lower_bound }}
    end
{%- endmacro %}

{#- A price tier's amount when the charge's total is `units` (graduated slices with their flat
    amount once reached; package: whole packages after the free units), used where a model is
    priced at a level other than the period's total (in advance: before and after each event). -#}
{% macro tier_amount_at(units, charges, tiers) -%}
    case when {{ charges }}.charge_model = 'package'
        then {{ ceil_divide("case when " ~ units ~ " > " ~ charges ~ ".free_units then " ~ units ~ " - " ~ charges ~ ".free_units else 0 end",
                           charges ~ '.package_size') }} * {{ tiers }}.per_unit_amount
        else {{ units_in_tier(units, tiers ~ '.lower_bound', tiers ~ '.to_value') }} * {{ tiers }}.per_unit_amount
            + case when {{ tiers }}.tier_index = 0 or {{ units }} > {{ tiers }}.lower_bound
                then {{ tiers }}.flat_amount else 0 end
    end
{%- endmacro %}

{#- Round down to the currency's minor unit: the most of a precise amount a discount or a
    credit may take without taking the amount below zero. Constant branches, as round_money. -#}
{% macro floor_money(amount, minor_unit) -%}
    cast(case {{ minor_unit }}
        when 0 then cast(floor({{ amount }}) as {{ rounded_money_type() }})
        when 2 then cast(floor(({{ amount }}) * 100) * 0.01 as {{ rounded_money_type() }})
        when 3 then cast(floor(({{ amount }}) * 1000) * 0.001 as {{ rounded_money_type() }})
    end as {{ rounded_money_type() }})
{%- endmacro %}

{#- rate percent of an amount, exactly: the amount has at most 12 decimals and the rate at most
    6 (the catalog enforces it), so the product is exact at 18 decimals and the percent at 20.
    Callers sum these exact values and round the sum once (a coupon, a tax per rate). -#}
{% macro percent_of(amount, rate) -%}
    (cast(({{ amount }}) * cast({{ rate }} as decimal(18, 6)) as decimal(38, 18)) * 0.01)
{%- endmacro %}

{#- A row's share of `amount` (one per partition: a coupon's discount, a wallet's payment on an
    invoice) in proportion to `weight` over `weight_total`, exact to 12 decimals; the row with
    the largest weight (then `tie_break`) takes the last digits, so the shares of a partition add
    up to `amount` exactly. A window expression: use it in the select list. -#}
{% macro spread_in_proportion(amount, weight, weight_total, partition_by, tie_break) -%}
    {#- weight x (amount / total): the ratio is exact to 12 decimals whatever the sizes (the
        product amount x weight would not fit 12 decimals for small amounts); when the amount
        takes the whole total, each row takes its whole weight. Weights are precise amounts
        (12 decimals): a wider one would overflow the product above a million. -#}
    {%- set raw_share -%}
        case
            when {{ weight_total }} <= 0 then cast(0 as {{ precise_money_type() }})
            when {{ amount }} >= {{ weight_total }} then {{ to_precise_money(weight) }}
            else {{ to_precise_money(to_precise_money(weight) ~ ' * ' ~ exact_ratio(amount, weight_total)) }}
        end
    {%- endset -%}
    ({{ raw_share }} + case
        when row_number() over (partition by {{ partition_by }} order by {{ weight }} desc, {{ tie_break }}) = 1
            then {{ amount }} - sum({{ raw_share }}) over (partition by {{ partition_by }})
        else 0
    end)
{%- endmacro %}
