{#- An event's deduplication key as one 64-bit hash: the transaction id within its owner (the
    subscription, or the customer when the event names no subscription). Equal keys hash alike;
    two different keys may too (about once in 10^11 pairs), so a hash only nominates events,
    and the deduplication compares the keys themselves (int_event_duplicates). Each engine uses
    its native non-cryptographic hash: hashing is most of the cost of indexing 100M events. -#}
{% macro event_key_hash(subscription_id, customer_id, transaction_id) -%}
    {{ return(adapter.dispatch('event_key_hash', 'meterline')(subscription_id, customer_id, transaction_id)) }}
{%- endmacro %}

{% macro default__event_key_hash(subscription_id, customer_id, transaction_id) -%}
    {{ dbt.hash("coalesce('s' || " ~ subscription_id ~ ", 'c' || " ~ customer_id ~ ") || '|' || " ~ transaction_id) }}
{%- endmacro %}

{% macro duckdb__event_key_hash(subscription_id, customer_id, transaction_id) -%}
    hash({{ subscription_id }}, case when {{ subscription_id }} is null then {{ customer_id }} end, {{ transaction_id }})
{%- endmacro %}

{% macro postgres__event_key_hash(subscription_id, customer_id, transaction_id) -%}
    hashtextextended(coalesce('s' || {{ subscription_id }}, 'c' || {{ customer_id }}) || '|' || {{ transaction_id }}, 0)
{%- endmacro %}

{% macro spark__event_key_hash(subscription_id, customer_id, transaction_id) -%}
    xxhash64(coalesce(concat('s', {{ subscription_id }}), concat('c', {{ customer_id }})), {{ transaction_id }})
{%- endmacro %}

{#- A raw event's id from its batch and row: "<batch_id>-<row>", as the loaders name it
    (orchestration/ingest.py for ingested files, orchestration/lake.py for a lake's). For the
    rows a model reads back by batch and row, without computing the id of every raw event. -#}
{% macro event_id(batch_id, source_row) -%}
    {{ dbt.concat([batch_id, "'-'", "cast(" ~ source_row ~ " as " ~ dbt.type_string() ~ ")"]) }}
{%- endmacro %}

{#- The index of keys built by earlier runs (int_event_keys), when it exists. The deduplication
    runs before the index takes the new loads (so both read the same new loads: those after the
    index's newest), which is why it finds the index by name rather than by ref: a ref would
    make the two models depend on each other. -#}
{% macro event_key_index() -%}
    {{ return(adapter.get_relation(database=this.database, schema=this.schema, identifier='int_event_keys')) }}
{%- endmacro %}

{#- The newest load in the key index, as a timestamp literal ('' when there is none): the events
    loaded after it are the new ones. A literal, not a subquery: a constant filter lets the
    warehouse skip whole loads when it plans the query (an events lake's earlier files). -#}
{% macro event_key_index_through() -%}
    {%- set index = event_key_index() -%}
    {%- if index is none or not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set newest = run_query('select max(loaded_at) from ' ~ index).columns[0].values()[0] -%}
    {{ return('' if newest is none else newest | string) }}
{%- endmacro %}

{#- The key hashes that occur more than once among `key_hashes` (a subquery with a key_hash
    column), each once. A first build (no key index yet) asks this of every event's hash. -#}
{% macro repeated_key_hashes(key_hashes) -%}
    {{ return(adapter.dispatch('repeated_key_hashes', 'meterline')(key_hashes)) }}
{%- endmacro %}

{% macro default__repeated_key_hashes(key_hashes) -%}
    select every_key.key_hash
    from {{ key_hashes }} as every_key
    group by 1
    having count(*) > 1
{%- endmacro %}

{#- DuckDB: sorted, a hash that equals the next one repeats. 100M distinct hashes do not fit a
    hash table under a few GB, and its grouping spills; the sort measured about 1.5x faster at
    100M under a 3 GB limit. (Spark keeps the grouping: it distributes, a global sort does not.) -#}
{% macro duckdb__repeated_key_hashes(key_hashes) -%}
    select distinct ordered.key_hash
    from (
        select every_key.key_hash, lead(every_key.key_hash) over (order by every_key.key_hash) as next_key_hash
        from {{ key_hashes }} as every_key
    ) as ordered
    where ordered.key_hash = ordered.next_key_hash
{%- endmacro %}
