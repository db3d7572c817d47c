"""The dbt models as Dagster assets; dbt tests become asset checks. Any failing dbt test fails
the step, so nothing downstream (invoice files) is produced from numbers that failed a check."""


from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from dagster import AssetExecutionContext, AssetSpec
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets

from orchestration import pipeline
from orchestration.resources import MeterlineSettings
from orchestration.settings import PROJECT_DIR, dbt_environment

AS_OF_TAG = "meterline/as_of"


def dbt_project() -> DbtProject:
    project = DbtProject(project_dir=PROJECT_DIR, profiles_dir=PROJECT_DIR)
    if not project.manifest_path.exists():
        raise FileNotFoundError(
            f"{project.manifest_path} is missing: run `make manifest` (dbt parse) before loading the definitions."
        )
    return project


class MeterlineTranslator(DagsterDbtTranslator):
    """Groups follow the model folders (staging, intermediate, marts); sources keep their
    [source, table] keys so they line up with the Python assets that write them."""

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        node = self.get_resource_props(manifest, unique_id)
        if node["resource_type"] in ("model", "seed", "snapshot"):
            folder = node["fqn"][1] if node["resource_type"] == "model" and len(node["fqn"]) > 2 else "reference"
            spec = spec.replace_attributes(group_name=folder)
        return spec


def run_as_of(context: AssetExecutionContext) -> datetime:
    tag = context.run.tags.get(AS_OF_TAG)
    if tag:
        return datetime.fromisoformat(tag.replace("Z", "+00:00")).astimezone(timezone.utc).replace(tzinfo=None)
    return pipeline.utc_now()


def build_dbt_assets():
    project = dbt_project()

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=MeterlineTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)),
    )
    def meterline_models(context: AssetExecutionContext, dbt: DbtCliResource, meterline: MeterlineSettings):
        """Build and test every dbt model as of the run's clock (tag meterline/as_of, else now)."""
        settings = meterline.settings()
        as_of = run_as_of(context)
        full_refresh, reason = pipeline.needs_full_refresh(settings, as_of)
        if pipeline.drop_stale_key_index(settings):
            full_refresh, reason = True, "the key index is rebuilt"
        context.log.info(f"as_of {pipeline.format_as_of(as_of)}; {'full refresh' if full_refresh else 'incremental'}: {reason}")
        started = pipeline.utc_now()
        loaded_through = pipeline.prepare_build(settings)
        args = [*pipeline.BUILD_COMMAND]
        if full_refresh:
            args.append("--full-refresh")
        # profiles.yml reads the warehouse location from it, the models the clock (macros/as_of.sql)
        with dbt_environment(settings, pipeline.format_as_of(as_of)):
            yield from dbt.cli(args, context=context).stream()
        from orchestration.warehouse import connect

        with connect(settings) as warehouse:
            pipeline.record_run(warehouse, as_of, full_refresh, started, loaded_through,
                                pipeline.key_index_fingerprint(settings))

    return meterline_models
