"""Automation conditions shared by the assets and their checks."""

from dagster import AutomationCondition

_DATA_VERSION_CHANGED = AutomationCondition.any_deps_match(
    AutomationCondition.data_version_changed())

# eager(), but only when an upstream partition's *data version* changed: a rematerialization
# that produced the same data (a no-op refresh, a freshness re-check) triggers nothing
# downstream, where eager() alone would re-run everything below it.
ON_UPSTREAM_CHANGE = AutomationCondition.eager().replace(
    "any_deps_updated", _DATA_VERSION_CHANGED
).with_label("eager_on_data_version_change")

# Checks: only when the checked asset's data version changed. eager()'s other trigger,
# newly_missing, would request every check after each rematerialization that ran without its
# checks (a check counts as missing until it has evaluated the newest materialization), data
# changed or not.
AFTER_DATA_CHANGE = (
    AutomationCondition.in_latest_time_window()
    & _DATA_VERSION_CHANGED.since_last_handled()
    & ~AutomationCondition.any_deps_missing()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("after_data_version_change")
