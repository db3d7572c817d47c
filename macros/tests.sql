{#- Generic tests that dbt-utils would provide; packages cannot be downloaded here, and these
    few lines do not justify a dependency. -#}
{% test unique_combination_of_columns(model, columns) %}
select {{ columns | join(', ') }}, count(*) as row_count
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}

{% test expression_is_true(model, column_name=none, expression=none) %}
select * from {{ model }} where not ({{ expression }})
{% endtest %}
