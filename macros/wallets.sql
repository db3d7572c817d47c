{#- Whether a wallet may pay a fee (docs/invoice-amounts.md): a wallet without limits pays any
    fee; a limited one the fees of the kinds or metrics in `limits` (stg_catalog__wallet_limits,
    or a CTE over it). -#}
{% macro wallet_may_pay(limits, wallet_id, fee_kind, metric_code) -%}
    (
        not exists (select 1 from {{ limits }} where {{ limits }}.wallet_id = {{ wallet_id }})
        or exists (
            select 1
            from {{ limits }}
            where {{ limits }}.wallet_id = {{ wallet_id }}
                and (
                    ({{ limits }}.limited_to = 'fee_kind' and {{ limits }}.target_code = {{ fee_kind }})
                    or ({{ limits }}.limited_to = 'metric' and {{ limits }}.target_code = {{ metric_code }})
                )
        )
    )
{%- endmacro %}
