"""Automation conditions shared by the assets and their checks."""

from dagster import AutomationCondition

# eager(), but only when an upstream partition's *data version* changed: a rematerialization
# that produced the same data (a no-op refresh, a freshness re-check) triggers nothing
# downstream, where eager() alone would re-run everything below it.
ON_UPSTREAM_CHANGE = AutomationCondition.eager().replace(
    "any_deps_updated", AutomationCondition.any_deps_match(AutomationCondition.data_version_changed())
).with_label("eager_on_data_version_change")
