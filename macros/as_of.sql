{#- The billing run's clock as a timestamp literal (UTC). Periods ending after it are open: their
    invoices are drafts and their events pending. -#}
{% macro as_of_timestamp() -%}
    cast('{{ billing_as_of() }}' as timestamp)
{%- endmacro %}

{#- The clock ('YYYY-MM-DD HH:MM:SS'): the var `as_of` when one is given (an ad-hoc
    `dbt ... --vars '{"as_of": ...}'`, a unit test's override), else the environment variable
    METERLINE_AS_OF (what the CLI and Dagster set), else 2100-01-01, when every period is open.
    The CLI passes an environment variable rather than a var because dbt parses the whole
    project again whenever a var changes, and the clock changes every run (seconds of start-up
    for every build). The variable is read only when models run (`execute`), not while dbt
    parses, so partial parsing does not depend on it: the clock changes no parsed node. -#}
{% macro billing_as_of() -%}
    {%- set explicit = var('as_of', none) -%}
    {%- set every_period_open = '2100-01-01 00:00:00' -%}
    {%- if explicit is not none -%}
        {{ return(explicit | string) }}
    {%- endif -%}
    {{ return(env_var('METERLINE_AS_OF', every_period_open) if execute else every_period_open) }}
{%- endmacro %}
